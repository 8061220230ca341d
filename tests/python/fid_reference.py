"""Oracle for the FID test: reads features "a" [Na, F] and "b" [Nb, F] from a safetensors file
and prints the FID computed the pytorch-fid way (numpy.cov, scipy.linalg.sqrtm of the product,
real part). With --offset EPS it adds EPS to both covariance diagonals first (what pytorch-fid
does when sqrtm fails; ctfgen does it whenever a set has n <= dim).
Usage: /usr/bin/python3 fid_reference.py features.safetensors [--offset 1e-6]"""
import sys

import numpy as np
from scipy import linalg

sys.path.insert(0, __import__("os").path.dirname(__file__))
import st_numpy  # noqa: E402


def fid(a, b, offset=0.0):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    if offset > 0:
        eye = np.eye(s1.shape[0]) * offset
        s1, s2 = s1 + eye, s2 + eye
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)


def main():
    tensors, _ = st_numpy.load(sys.argv[1])
    offset = float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--offset" else 0.0
    a = tensors["a"].astype(np.float64)
    b = tensors["b"].astype(np.float64)
    print(repr(float(fid(a, b, offset))))


if __name__ == "__main__":
    main()
