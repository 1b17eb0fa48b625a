"""trained_models.zip's layout, written by the real writers: a Lightning Trainer with a
LightningModule built like the paper's (save_hyperparameters of the SMP net, the SMP loss and
functools.partial optimiser and scheduler), ModelCheckpoint "epoch_{epoch:03d}" on val/f1 with
last.ckpt, and a TensorBoardLogger whose hparams.yaml holds the Hydra-style config and whose
event log holds val/f1_best. The datamodule's channels are an omegaconf ListConfig, as Hydra
passes them, so the checkpoints hold omegaconf objects too.

Small encoders keep each checkpoint to a few megabytes; the format is the paper's.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import torch

from lsd.pipeline.paper.facts import SETTING_CHANNELS
from tests.paper_fixtures import event_arrays

ENCODER = "mobilenet_v2"
NET_TARGETS = {"Unet": "Unet", "Linknet": "Linknet", "FPN": "FPN", "UPerNet": "UPerNet"}
LOSS_TARGETS = {
    "BCE": ("SoftBCEWithLogitsLoss", {}),
    "Dice": ("DiceLoss", {"mode": "binary"}),
    "Focal": ("FocalLoss", {"mode": "binary"}),
    "Jaccard": ("JaccardLoss", {"mode": "binary"}),
    "Lovasz": ("LovaszLoss", {"mode": "binary"}),
}


def _modules():
    import pytorch_lightning as pl
    import torchmetrics

    class PaperLikeModule(pl.LightningModule):
        def __init__(self, net, loss, optimizer, scheduler):
            super().__init__()
            self.save_hyperparameters(logger=False)
            self.net, self.loss = net, loss
            self.val_f1 = torchmetrics.F1Score(task="binary")
            self.val_f1_best = torchmetrics.MaxMetric()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = self.loss(self(x), y)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val/loss", self.loss(logits, y), on_step=False, on_epoch=True)
            self.val_f1(torch.sigmoid(logits), y.int())
            self.log("val/f1", self.val_f1, on_step=False, on_epoch=True)

        def on_validation_epoch_end(self):
            self.val_f1_best(self.val_f1.compute())
            self.log("val/f1_best", self.val_f1_best.compute())

        def configure_optimizers(self):
            opt = self.hparams.optimizer(params=self.parameters())
            sched = self.hparams.scheduler(optimizer=opt)
            schedule = {"scheduler": sched, "monitor": "val/loss", "interval": "epoch",
                        "frequency": 1}  # fmt: skip
            return {"optimizer": opt, "lr_scheduler": schedule}

    class PaperLikeData(pl.LightningDataModule):
        def __init__(self, channels=None, batch_size=2, random_crop=64, samples_per_epoch=4):
            super().__init__()
            self.save_hyperparameters(logger=False)

        def _tensors(self, numbers):
            xs, ys = [], []
            for n in numbers:
                x, y = event_arrays(n, 64, 64)
                x = np.nan_to_num((x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-6))
                chans = list(self.hparams.channels) if self.hparams.channels else range(15)
                xs.append(torch.from_numpy(np.moveaxis(x, 2, 0)[chans].copy()))
                ys.append(torch.from_numpy(y[None].astype(np.float32)))
            return torch.utils.data.TensorDataset(torch.stack(xs), torch.stack(ys))

        def train_dataloader(self):
            return torch.utils.data.DataLoader(self._tensors([1, 2, 3, 4]), batch_size=2)

        def val_dataloader(self):
            return torch.utils.data.DataLoader(self._tensors([8, 9]), batch_size=1)

    return PaperLikeModule, PaperLikeData


def _config(arch: str, loss: str, lr: float, channels: tuple[int, ...] | None) -> dict:
    loss_cls, loss_kw = LOSS_TARGETS[loss]
    n_in = len(channels) if channels else 15
    model = {
        "_target_": "src.models.landslide_module.LandslideLitModule",
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr,
                      "weight_decay": 0.0},
        "scheduler": {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                      "_partial_": True, "mode": "min", "factor": 0.1, "patience": 10},
        "net": {"_target_": f"segmentation_models_pytorch.{NET_TARGETS[arch]}",
                "encoder_weights": None, "in_channels": n_in, "classes": 1,
                "encoder_name": ENCODER},
        "loss": {"_target_": f"segmentation_models_pytorch.losses.{loss_cls}", **loss_kw},
    }  # fmt: skip
    data = {
        "_target_": "src.data.landslides_datamodule.GlobalLandslideDataModule",
        "batch_size": 4, "random_crop": 256, "random_flip": True, "normalize": True,
        "train_val_split": 0.8, "samples_per_epoch": 1000,
    }  # fmt: skip
    if channels:
        data["channels"] = list(channels)
    return {"model": model, "data": data, "seed": 42, "task_name": "train", "tags": ["landslide"]}


def train_paper_run(
    run_dir: Path,
    arch: str,
    loss: str,
    lr: float,
    channels: tuple[int, ...] | None,
    *,
    save_last: bool = False,
    epochs: int = 2,
) -> Path:
    """One numbered run folder of a multirun, as the paper's train.py leaves it."""
    import pytorch_lightning as pl
    import segmentation_models_pytorch as smp
    from omegaconf import ListConfig, OmegaConf
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger

    module_cls, data_cls = _modules()
    cfg = _config(arch, loss, lr, channels)
    net_kw = {k: v for k, v in cfg["model"]["net"].items() if k != "_target_"}
    net = getattr(smp, NET_TARGETS[arch])(**net_kw)
    loss_cls, loss_kw = LOSS_TARGETS[loss]
    module = module_cls(
        net=net,
        loss=getattr(smp.losses, loss_cls)(**loss_kw),
        optimizer=functools.partial(torch.optim.Adam, lr=lr, weight_decay=0.0),
        scheduler=functools.partial(
            torch.optim.lr_scheduler.ReduceLROnPlateau, mode="min", factor=0.1, patience=10
        ),
    )
    data = data_cls(channels=ListConfig(list(channels)) if channels else None)
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=0)
    logger.log_hyperparams(OmegaConf.create(cfg))
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=logger,
        callbacks=[
            ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="epoch_{epoch:03d}",
                            monitor="val/f1", mode="max", save_last=save_last,
                            auto_insert_metric_name=False),
            EarlyStopping(monitor="val/f1", patience=50, mode="max"),
        ],
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=data)
    return run_dir


PAPER_RUNS = {  # setting folder -> runs (arch, loss, lr); Linknet trains fastest here
    "sentinel2_ensemble": [("Linknet", "Dice", 0.001), ("Linknet", "BCE", 0.01)],
    "all_ch_ensemble": [("Linknet", "Jaccard", 0.001)],
}  # fmt: skip
FOLDER_SETTING = {"sentinel2_ensemble": "s2", "all_ch_ensemble": "all"}


def write_trained_models(root: Path) -> Path:
    """root/trained_models/<setting>_ensemble/<n>/ for the runs in PAPER_RUNS."""
    torch.manual_seed(0)
    models = root / "trained_models"
    for folder, runs in PAPER_RUNS.items():
        channels = SETTING_CHANNELS[FOLDER_SETTING[folder]]
        for n, (arch, loss, lr) in enumerate(runs):
            chans = None if FOLDER_SETTING[folder] == "all" else channels
            train_paper_run(models / folder / str(n), arch, loss, lr, chans, save_last=n == 0,
                            epochs=2 if n == 0 else 1)  # fmt: skip
    return models
