"""Imports every op module so that its @register decorators fill the registry."""

from . import (  # noqa: F401
    binary,
    bitwise,
    conv,
    elementwise,
    internal,
    matmul,
    misc,
    movement,
    norm,
    pad,
    pool,
    rearrange,
    reduce,
    scan,
    scatter,
    shape_ops,
    sort,
    unary,
    views,
)
