"""FITS at the edges: reading and atomic writing, writable headers, ccdflow's header cards,
provenance cards and the disk spool."""
