"""Feature detectors for FID, IS and FVD: the published TorchScript files, or tiny stand-ins.

StyleGAN-V scores frames with NVIDIA's TorchScript port of Inception-v3
(``inception-2015-12-05.pt``) and videos with a TorchScript I3D (``i3d_torchscript.pt``).
Both take ``uint8`` tensors and resize internally; they are called as

- ``inception(img [N, 3, H, W], return_features=True)`` -> pool features (FID),
- ``inception(img, no_output_bias=True)`` -> class probabilities (IS),
- ``i3d(video [N, 3, T, H, W], rescale=True, resize=True, return_features=True)`` -> logits
  (FVD).

Files are pinned by SHA-256 and loaded with :func:`load_detector`. Tests and plumbing runs,
which may not download weights, use tiny random-init TorchScript conv nets with the same call
signatures and input dtype (:func:`write_tiny_detector`); their scores check the plumbing, not
image quality.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from echogen.data.errors import DataError
from echogen.data.io import atomic_path
from echogen.weights import sha256_file

log = logging.getLogger(__name__)

# SHA-256 of the published detector files. Their real hashes are not recorded anywhere we can
# check offline, so they stay None: every detector is then reported as "not published" (a
# plumbing check) until someone fills these in from a verified download.
PUBLISHED_SHA256: dict[str, str | None] = {
    "inception": None,  # inception-2015-12-05.pt (nvlabs-fi-cdn, stylegan2-ada-pytorch)
    "i3d": None,  # i3d_torchscript.pt (StyleGAN-V's dropbox link)
}

TINY_SIZE = 32
TINY_INCEPTION_FEATURES = 32
TINY_INCEPTION_CLASSES = 10
TINY_I3D_FEATURES = 16
# Pooled random conv features vary little from image to image; a sharper classifier keeps the
# tiny nets' probabilities (IS) and logits (FVD) from being nearly constant.
TINY_CLASSIFIER_GAIN = 20.0
DETECTOR_KINDS = ("inception", "i3d")


def load_detector(
    path: str | Path, sha256: str | None, device: str | torch.device = "cpu"
) -> torch.jit.ScriptModule:
    """Load a TorchScript detector in eval mode, checking its SHA-256 when one is given."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            path,
            "the detector weights file does not exist",
            "run the download_weights rule, or set the detector's path in the config",
        )
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise DataError(
                path,
                f"SHA-256 is {actual}, expected {sha256}",
                "download the file again, or update the pinned sha256 if the change is intended",
            )
    # The published detectors exist only as TorchScript, so its deprecation warning is noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        detector = torch.jit.load(str(path), map_location=device)
    return detector.eval()


def _init_weight(generator: torch.Generator, *shape: int, gain: float = 1.0) -> nn.Parameter:
    """He-normal weights (fan-in over all but the first dimension) times ``gain``."""
    fan_in = math.prod(shape[1:])
    std = gain * math.sqrt(2.0 / fan_in)
    return nn.Parameter(torch.randn(shape, generator=generator) * std)


# The tiny nets hold bare parameters and call torch.nn.functional: TorchScript then writes no
# nn.ConvNd constants, whose order in the saved code follows Python's per-process string hash
# and would make the file bytes differ from run to run.


class TinyInception(nn.Module):
    """Three stride-2 3x3 convs on a 32x32 resize, global average pool, linear classifier.

    Mirrors ``inception-2015-12-05.pt``'s interface: ``uint8`` input in 0..255 of any size,
    pool features with ``return_features``, else softmax probabilities (``no_output_bias``
    drops the classifier bias). Features: 32-d; classes: 10.

    Args:
        seed: seeds the random initialisation.
    """

    def __init__(self, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.size = TINY_SIZE
        self.conv1_weight = _init_weight(gen, 8, 3, 3, 3)
        self.conv2_weight = _init_weight(gen, 16, 8, 3, 3)
        self.conv3_weight = _init_weight(gen, TINY_INCEPTION_FEATURES, 16, 3, 3)
        self.fc_weight = _init_weight(
            gen, TINY_INCEPTION_CLASSES, TINY_INCEPTION_FEATURES, gain=TINY_CLASSIFIER_GAIN
        )
        self.fc_bias = nn.Parameter(torch.randn(TINY_INCEPTION_CLASSES, generator=gen))

    def forward(
        self,
        img: torch.Tensor,
        return_features: bool = False,
        use_fp16: bool = False,
        no_output_bias: bool = False,
    ) -> torch.Tensor:
        """``img``: uint8 ``[N, 3, H, W]``; returns ``[N, 32]`` features or ``[N, 10]`` probs."""
        if img.dtype != torch.uint8 or img.dim() != 4 or img.size(1) != 3:
            raise ValueError("TinyInception expects a uint8 tensor [N, 3, H, W]")
        if use_fp16:
            raise ValueError("TinyInception computes in fp32 only")
        size = (self.size, self.size)
        x = F.interpolate(img.float(), size=size, mode="bilinear", align_corners=False)
        x = (x - 128.0) / 128.0
        x = F.relu(F.conv2d(x, self.conv1_weight, stride=2, padding=1))  # [N, 8, 16, 16]
        x = F.relu(F.conv2d(x, self.conv2_weight, stride=2, padding=1))  # [N, 16, 8, 8]
        x = F.relu(F.conv2d(x, self.conv3_weight, stride=2, padding=1))  # [N, 32, 4, 4]
        features = x.mean(dim=(2, 3))
        if return_features:
            return features
        logits = features @ self.fc_weight.t()
        if not no_output_bias:
            logits = logits + self.fc_bias
        return F.softmax(logits, dim=1)


class TinyI3D(nn.Module):
    """Three 3x3x3 convs (spatial stride 2, then stride 2), global average pool, linear logits.

    Mirrors ``i3d_torchscript.pt``'s interface: ``uint8`` video ``[N, 3, T, H, W]``;
    ``rescale`` maps 0..255 to [-1, 1], ``resize`` resamples to ``(T, 32, 32)``;
    ``return_features`` returns the 16 logits, else their softmax.

    Args:
        seed: seeds the random initialisation.
    """

    def __init__(self, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.size = TINY_SIZE
        self.conv1_weight = _init_weight(gen, 8, 3, 3, 3, 3)
        self.conv2_weight = _init_weight(gen, 16, 8, 3, 3, 3)
        self.conv3_weight = _init_weight(gen, 32, 16, 3, 3, 3)
        self.fc_weight = _init_weight(gen, TINY_I3D_FEATURES, 32, gain=TINY_CLASSIFIER_GAIN)
        self.fc_bias = nn.Parameter(torch.randn(TINY_I3D_FEATURES, generator=gen))

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        """``x``: uint8 ``[N, 3, T, H, W]``; returns ``[N, 16]`` logits or probabilities."""
        if x.dtype != torch.uint8 or x.dim() != 5 or x.size(1) != 3:
            raise ValueError("TinyI3D expects a uint8 tensor [N, 3, T, H, W]")
        video = x.float()
        if rescale:
            video = video / 127.5 - 1.0
        if resize:
            size = (video.size(2), self.size, self.size)
            video = F.interpolate(video, size=size, mode="trilinear", align_corners=False)
        video = F.relu(F.conv3d(video, self.conv1_weight, stride=(1, 2, 2), padding=1))
        video = F.relu(F.conv3d(video, self.conv2_weight, stride=2, padding=1))
        video = F.relu(F.conv3d(video, self.conv3_weight, stride=2, padding=1))
        pooled = video.mean(dim=(2, 3, 4))  # [N, 32]
        logits = pooled @ self.fc_weight.t() + self.fc_bias
        if return_features:
            return logits
        return F.softmax(logits, dim=1)


def _script(module: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        return torch.jit.script(module.eval())


def build_tiny_inception(seed: int) -> torch.jit.ScriptModule:
    """A scripted :class:`TinyInception` initialised from ``seed``."""
    return _script(TinyInception(seed))


def build_tiny_i3d(seed: int) -> torch.jit.ScriptModule:
    """A scripted :class:`TinyI3D` initialised from ``seed``."""
    return _script(TinyI3D(seed))


def write_tiny_detector(kind: str, path: str | Path, seed: int) -> str:
    """Write a tiny ``"inception"`` or ``"i3d"`` TorchScript file atomically; return its SHA-256.

    The bytes are the same for the same seed, torch version and install location (TorchScript
    debug info records the source file paths), so record the hash rather than pinning it.
    """
    builders = {"inception": build_tiny_inception, "i3d": build_tiny_i3d}
    if kind not in builders:
        raise ValueError(f"kind must be one of {DETECTOR_KINDS}, got {kind!r}")
    module = builders[kind](seed)
    # Saving to a buffer keeps the temporary file's random name out of the archive's records.
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        torch.jit.save(module, buffer)
    data = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
