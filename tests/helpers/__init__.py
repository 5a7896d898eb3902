"""Shared test helpers: the bad-input matrix's machinery, small stores, stacks and models made on the fly."""
