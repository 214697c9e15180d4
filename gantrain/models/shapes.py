"""Checks that a network can produce or read the data shape it is given."""

from collections.abc import Sequence

from gantrain.errors import UserError


def image_shape(shape: Sequence[int], model: str) -> tuple[int, int]:
    """(channels, size) of square images (C, H, W); anything else is refused with the model named."""
    if len(shape) != 3:
        raise UserError(f"model={model} makes images but the data has samples of shape {tuple(shape)}: pick an image dataset")
    channels, height, width = shape
    if height != width:
        raise UserError(f"model={model} needs square images, the data is {height}x{width}: set data.image_size")
    return int(channels), int(height)


def power_of_two_blocks(size: int, model: str, smallest: int = 8, largest: int = 1024) -> int:
    """Number of stride-2 blocks between 4x4 and `size`; only powers of two can be reached."""
    if size < smallest or size > largest or size & (size - 1):
        raise UserError(
            f"model={model} cannot make {size}x{size} images: it doubles 4x4 up to a power of two; "
            f"set data.image_size to one of {[2 ** k for k in range(3, 11) if smallest <= 2 ** k <= largest]}"
        )
    return size.bit_length() - 3  # log2(size) - 2
