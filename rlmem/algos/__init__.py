"""Training loops, one readable file per algorithm, sharing :mod:`rlmem.algos.functional`."""
