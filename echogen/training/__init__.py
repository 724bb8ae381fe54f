"""Training loops: resumable, deterministic accelerate loops that export ``save_pretrained``
folders (``regressor``: the EF video regressors)."""
