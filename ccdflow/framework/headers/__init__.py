"""Reading raw headers: instrument header maps, per-frame limits, classification of files,
where the pixels are, detector sections and amplifier geometry."""
