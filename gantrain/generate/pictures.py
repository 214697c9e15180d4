"""Grids and animations of generated images as files (PNG, GIF, MP4) and as TensorBoard images."""

import io
import logging
from pathlib import Path

from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from gantrain.errors import UserError
from gantrain.training.loggers import to_pil

log = logging.getLogger(__name__)
MP4_PACKAGES = "pip install imageio imageio-ffmpeg"


def grid(images: Tensor, nrow: int) -> Image.Image:
    """images (B, C, H, W) in [-1, 1] as one RGB picture, nrow images per row."""
    return to_pil(make_grid(images.float(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1)))


def check_movie_file(path: Path) -> None:
    """Before any work: a walk is a .gif (Pillow) or an .mp4 (imageio's ffmpeg, when installed)."""
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"out={path}: a walk is written as a .gif (or an .mp4)")
    if suffix == ".mp4":
        try:
            import imageio.v2  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise UserError(f"out={path}: an MP4 needs imageio and its ffmpeg ({MP4_PACKAGES}); or write a GIF: "
                            f"out={path.with_suffix('.gif')}") from None


def write_movie(frames: list[Image.Image], path: Path, fps: float) -> Path:
    """An animation that loops: a GIF through Pillow, or an MP4 (H.264) through imageio's ffmpeg."""
    check_movie_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        path.write_bytes(gif_bytes(frames, fps))
        return path
    import imageio.v2 as imageio
    import numpy as np

    # H.264 in yuv420p needs even sides: pad by a pixel rather than let ffmpeg rescale the grid
    width, height = frames[0].width + frames[0].width % 2, frames[0].height + frames[0].height % 2
    arrays = [np.asarray(padded(frame, width, height)) for frame in frames]
    imageio.mimwrite(path, arrays, fps=fps, macro_block_size=1)
    return path


def padded(frame: Image.Image, width: int, height: int) -> Image.Image:
    if frame.size == (width, height):
        return frame
    canvas = Image.new("RGB", (width, height))
    canvas.paste(frame, (0, 0))
    return canvas


def gif_bytes(frames: list[Image.Image], fps: float) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return buffer.getvalue()


def log_to_tensorboard(log_dir: Path, tag: str, step: int, frames: list[Image.Image], fps: float = 12) -> None:
    """A still picture (one frame) or an animation (several, as an animated GIF, which TensorBoard's image tab
    plays) in an event file of log_dir, at the run's step. The GIF is written as it is because SummaryWriter's
    add_video needs moviepy."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    if len(frames) == 1:
        buffer = io.BytesIO()
        frames[0].save(buffer, format="PNG")
        encoded = buffer.getvalue()
    else:
        encoded = gif_bytes(frames, fps)
    image = Summary.Image(height=frames[0].height, width=frames[0].width, colorspace=3, encoded_image_string=encoded)
    writer = SummaryWriter(str(log_dir))
    try:
        writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    finally:
        writer.close()
    log.info("TensorBoard: %s at step %d -> %s", tag, step, log_dir)
