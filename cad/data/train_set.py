"""The data module of a task that brings its own training set (captioned canvases with maps, caption shards, ADE20K).

Runs wrap it in ``cad.experiment.data_order.StepDataModule``, which reads ``train_set`` and draws the batches; its own
``train_dataloader`` (shuffled) is for direct use. ``noise_stats`` is what a table's notes say of the condition's
noise (None: nothing to say); a subclass sets it.
"""
from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset


class TrainSetDataModule(L.LightningDataModule):
    noise_stats: dict | None = None

    def __init__(self, train_set: Dataset, *, batch_size: int, num_workers: int = 0):
        super().__init__()
        self.train_set, self.batch_size, self.num_workers = train_set, batch_size, num_workers

    @property
    def splits(self) -> dict:
        return {"train": self.train_set}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)
