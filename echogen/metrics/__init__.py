"""Metrics for generated and real echocardiograms.

``generation`` computes StyleGAN-V's set metrics (FID, IS, FVD) on folders of frames, on top
of ``frechet`` (feature statistics, Fréchet distance), ``frame_folders`` (the dataset layout)
and ``detectors`` (TorchScript feature networks, checked by hash); ``paired`` holds per-video
SSIM/LPIPS and ``scores`` the EF-regression and classification metrics. Submodules are
imported on use, so importing this package stays cheap.
"""
