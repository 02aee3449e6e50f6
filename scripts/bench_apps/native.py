"""Native and child-process paths: a spawn pool, joblib's loky workers, a console
script by subprocess, ctypes dlopen by path, threadpoolctl inspecting loaded BLAS."""
import ctypes
import glob
import multiprocessing
import os
import subprocess
import sys


def square(x):
    import numpy as np  # imported in the child only
    return int(np.square(x))


def main() -> int:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
    from joblib import Parallel, delayed
    assert Parallel(n_jobs=2, backend="loky")(delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]
    scripts = glob.glob(os.path.join(sys.prefix, "bin", "f2py")) + glob.glob(
        os.path.join(sys.prefix, "bin", "fonttools"))
    for script in scripts[:1]:
        subprocess.run([script, "--help"], check=True, capture_output=True)
    libs = sorted(glob.glob(os.path.join(sys.prefix, "lib", "python3.*", "site-packages",
                                         "scipy.libs", "*.so*")))
    ctypes.CDLL(libs[0])
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info
    assert threadpool_info(), "no BLAS found"
    print("native ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
