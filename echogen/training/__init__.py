"""Training: one resumable, deterministic accelerate loop (``engine``) and the tasks that run
on it (``regressor``, ``classifier``, ``privacy``, ``vae``, ``lvdm``; clip tasks share
``supervised``), each exporting a ``save_pretrained`` folder with ``train.json`` and
``log.csv``; ``state`` holds the checkpoint and resume helpers."""
