"""Thread pools for the benchmarks: one setting for torch's OpenMP, OpenBLAS, MKL and numba, applied before any of
them starts (on the shared 2-core reference machine, 2-thread pools oversubscribe the cores)."""

import os

POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def limit_threads(n: int) -> None:
    """Size every pool to ``n`` threads (0 leaves the libraries' defaults); call before importing numpy/torch/numba."""
    if n:
        for var in POOL_VARIABLES:
            os.environ[var] = str(n)
