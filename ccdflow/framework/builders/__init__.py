"""What ccdflow makes: master calibrations and their headers, bad-pixel masks, reduced
frames and stacks."""
