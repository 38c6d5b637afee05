"""Winograd F(4x4, 3x3): the transform matrices and the build-time weight transform.

A 3x3 convolution's 4x4 output tile from a 6x6 input tile d is Y = A^T [(G g G^T) . (B^T d B)] A:
36 multiplies per tile and channel pair instead of 144. The CPU target's Winograd kernel
(codegen_templates/c/kernels/conv2d_winograd.c.j2) applies B^T and A^T at run time; the weights
file holds U = G g G^T (computed here in float64, rounded once to float32) as 36 matrices
[Cout, Cin], one per tile position (row-major: the GEMM's A).
"""

from __future__ import annotations

import numpy as np

# the interpolation points 0, +-1, +-2, +-1/2 (scaled to keep B^T and A^T in small integers)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], dtype=np.float64)
BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], dtype=np.float64)

NAME = "winograd_f43"
TILE = 4  # outputs per tile side
POINTS = 36  # (TILE + 2) ** 2 positions of a transformed tile


def transform_weights(weights: np.ndarray) -> np.ndarray:
    """[Cout, Cin, 3, 3] -> U [36, Cout, Cin] (position p = 6 * row + column), in the weights'
    own type, computed in float64."""
    g = np.asarray(weights, np.float64)
    u = np.einsum("ia,ocab,jb->ijoc", G, g, G)
    return np.ascontiguousarray(u.reshape(POINTS, *g.shape[:2]).astype(weights.dtype))


def untransform_weights(u: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The 3x3 weights of `shape` back from U (G's pseudo-inverse: exact but for U's rounding),
    for tools that read a built artifact's graph."""
    pinv = np.linalg.pinv(G)
    g = np.einsum("ai,ijoc,bj->ocab", pinv, np.asarray(u, np.float64).reshape(6, 6, *shape[:2]),
                  pinv)
    return np.ascontiguousarray(g.astype(u.dtype)).reshape(shape)


def stored_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (POINTS, shape[0], shape[1])
