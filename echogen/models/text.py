"""CLIP text encoders for EchoDream's text-conditioned LVDM.

EchoDream (https://github.com/Marshall-mk/Echodream; ``/work/shared/PAPERS.md`` §5) encodes
prompts with CLIP ViT-L/14's text tower (``openai/clip-vit-large-patch14``) and feeds its
``last_hidden_state`` (77 x 768) to the UNet's cross-attention. Nothing can be downloaded
here, so :func:`load_text_encoder` reads a local copy, and :func:`write_tiny_text_encoder`
writes a real but tiny, randomly initialised CLIP text model with a character-level tokenizer
for tests and the CPU demo.

Folder layouts read by :func:`load_text_encoder`:

- diffusers style: ``<folder>/tokenizer/`` and ``<folder>/text_encoder/`` (what
  :func:`write_tiny_text_encoder` and :func:`~echogen.models.lvdm.save_lvdm` write);
- a Hugging Face model folder with the tokenizer files and ``config.json`` + weights at its
  top level (e.g. a downloaded ``openai/clip-vit-large-patch14``; a full ``CLIPModel``
  checkpoint works, only its text tower is loaded).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import transformers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from echogen.data.errors import DataError
from echogen.data.io import atomic_dir

log = logging.getLogger(__name__)

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
MERGES_HEADER = "#version: 0.2"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def byte_unicode_table() -> dict[int, str]:
    """The byte -> printable unicode character table of byte-level BPE (GPT-2, CLIP).

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand
    for themselves; every other byte gets the next code point from 256 upwards, in byte order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def char_vocab() -> dict[str, int]:
    """A CLIP vocabulary without merges: every byte character, then its ``</w>`` form, then
    the start and end tokens (514 entries, in CLIP's own order)."""
    chars = list(byte_unicode_table().values())
    tokens = chars + [c + END_OF_WORD for c in chars] + [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}


def write_tiny_text_encoder(
    folder: str | Path,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_length: int = 77,
) -> Path:
    """Write a tiny random CLIP text encoder and a character-level CLIP tokenizer.

    The tokenizer is a real ``CLIPTokenizer`` (same normalisation, pre-tokenisation and
    start/end tokens as CLIP's) whose byte-level BPE vocabulary holds single characters only,
    so every prompt tokenises without any learned merges. The model is a ``CLIPTextModel``
    with a tiny ``CLIPTextConfig`` initialised from ``seed``; the same arguments write the
    same bytes.

    Args:
        folder: receives ``tokenizer/`` and ``text_encoder/`` (each replaced atomically).
        seed: seeds the weights.
        hidden_size: token width (the LVDM's ``cross_attention_dim``).
        layers: transformer layers.
        heads: attention heads (must divide ``hidden_size``).
        max_length: tokens per prompt (CLIP: 77); also the position-embedding count.

    Returns:
        ``folder``.
    """
    if hidden_size % heads:
        raise ValueError(f"heads ({heads}) must divide hidden_size ({hidden_size})")
    folder = Path(folder)
    vocab = char_vocab()
    with atomic_dir(folder / "tokenizer") as tmp:
        # CLIP's own file format (vocab.json + merges.txt), kept beside the tokenizer.json
        # that save_pretrained adds.
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (tmp / "merges.txt").write_text(MERGES_HEADER + "\n")
        tokenizer = CLIPTokenizer.from_pretrained(
            tmp, model_max_length=max_length, local_files_only=True
        )
        tokenizer.save_pretrained(tmp)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_length,
        bos_token_id=vocab[BOS_TOKEN],
        eos_token_id=vocab[EOS_TOKEN],
        pad_token_id=vocab[EOS_TOKEN],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPTextModel(config)
    with atomic_dir(folder / "text_encoder") as tmp:
        model.save_pretrained(tmp)
    log.info(
        "wrote a tiny CLIP text encoder (%d x %d, seed %d) to %s", layers, hidden_size, seed, folder
    )
    return folder


def _parts(folder: Path) -> tuple[Path, Path]:
    """The tokenizer and text-encoder folders of a diffusers-style or top-level layout."""
    if (folder / "tokenizer").is_dir() and (folder / "text_encoder").is_dir():
        return folder / "tokenizer", folder / "text_encoder"
    return folder, folder


def load_text_encoder(
    folder: str | Path, device: torch.device | str = "cpu"
) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """Load a CLIP tokenizer and text model from a local folder (layouts in the module doc).

    Args:
        folder: the folder; nothing is downloaded.
        device: where the model goes.

    Returns:
        ``(tokenizer, model)``; the model in eval mode with gradients off (frozen).

    Raises:
        DataError: the folder, its tokenizer files or its model config/weights are missing.
    """
    folder = Path(folder)
    fix = (
        "point at a folder with tokenizer/ and text_encoder/ (write_tiny_text_encoder or a "
        "saved LVDM) or a local copy of openai/clip-vit-large-patch14"
    )
    if not folder.is_dir():
        raise DataError(folder, "text encoder folder not found", fix)
    tokenizer_dir, model_dir = _parts(folder)
    if not any((tokenizer_dir / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(tokenizer_dir, f"no tokenizer files ({' or '.join(TOKENIZER_FILES)})", fix)
    if not (model_dir / "config.json").is_file():
        raise DataError(model_dir, "no text encoder config.json", fix)
    weights = list(model_dir.glob("*.safetensors")) + list(model_dir.glob("*.bin"))
    if not weights:
        raise DataError(model_dir, "no text encoder weights (*.safetensors or *.bin)", fix)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    verbosity = transformers.logging.get_verbosity()
    # A full CLIPModel checkpoint's vision tower is expected to go unused: no load report.
    transformers.logging.set_verbosity_error()
    try:
        model = CLIPTextModel.from_pretrained(model_dir, local_files_only=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.requires_grad_(False)
    return tokenizer, model.to(device).eval()
