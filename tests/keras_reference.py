"""Keras' per-image affine path (apply_affine_transform: matrices, then scipy.ndimage.affine_transform per
channel), re-typed for channels-last images. NOT a test oracle: the tests compare cnnlab with fixtures that
real Keras wrote (tests/keras_fixtures.py). It is the stand-in that benchmarks/augment_mnist.py times when
TensorFlow cannot be installed."""

import numpy as np
from scipy import ndimage


def transform_matrix_offset_center(matrix, x, y):
    o_x = float(x) / 2 - 0.5
    o_y = float(y) / 2 - 0.5
    offset_matrix = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset_matrix = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return offset_matrix @ matrix @ reset_matrix


def keras_affine(x, theta=0, tx=0, ty=0, shear=0, zx=1, zy=1, fill_mode="nearest", cval=0.0):
    """x: (H, W, C) float. Angles in degrees, as Keras."""
    m = None

    def chain(a, b):
        return b if a is None else a @ b

    if theta != 0:
        t = np.deg2rad(theta)
        m = chain(m, np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]))
    if tx != 0 or ty != 0:
        m = chain(m, np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]))
    if shear != 0:
        s = np.deg2rad(shear)
        m = chain(m, np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]]))
    if zx != 1 or zy != 1:
        m = chain(m, np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]]))
    if m is None:
        return x.copy()
    h, w = x.shape[0], x.shape[1]
    m = transform_matrix_offset_center(m, h, w)
    m[:, [0, 1]] = m[:, [1, 0]]  # col_axis > row_axis: Keras swaps x and y
    m[[0, 1]] = m[[1, 0]]
    channels = [  # Keras passes its fill mode to SciPy as it is
        ndimage.affine_transform(x[..., k], m[:2, :2], m[:2, 2], order=1, mode=fill_mode, cval=cval)
        for k in range(x.shape[2])
    ]
    return np.stack(channels, axis=2)
