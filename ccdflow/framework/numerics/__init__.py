"""Array arithmetic: the combine engine and its compiled kernels, frame arithmetic with
uncertainty, dead-readout detection and memory retention."""
