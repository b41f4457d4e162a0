"""The run configuration's schema: the sections of a run as typed dataclasses, their defaults and checks.

A classification run is described by one :class:`Config` (sections ``model``, ``data``, ``optim``,
``schedule``, ``train``, ``output``); a metric-learning run (``task: metric`` at the top of the YAML) by one
:class:`MetricRunConfig` (its own ``model``/``data`` sections, plus ``loss`` and ``metric``; see
:mod:`lorentzcv.train.metric`). The defaults are the offline demo (``lorentzcv train`` with no arguments: a small HECNN+
ResNet-18 learning its curvatures on scikit-learn's digits); ``configs/demo/digits_hecnn.yaml`` spells them
out and the paper's table rows in ``configs/`` set every protocol value explicitly (``docs/method.md`` §8).

``validate()`` refuses values that can only give NaNs or crash the run (negative learning rates or factors,
``label_smoothing`` outside [0, 1], an unknown device, inconsistent batch sizes) with a :class:`ConfigError`,
before anything is built or written. Reading these dataclasses from YAML and ``--set`` overrides is
:mod:`lorentzcv.train.config`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Config",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "OutputConfig",
    "MetricRunConfig",
    "MetricModelConfig",
    "MetricDataConfig",
    "LossConfig",
    "MetricConfig",
    "AnyConfig",
    "ConfigError",
    "TASKS",
]


class ConfigError(ValueError):
    """A configuration problem the user can fix (unknown key, wrong type, bad value, unreadable file)."""



# ------------------------------------------------------------------------------------------------------ sections


@dataclass
class ModelConfig:
    """Which model to build (``lorentzcv.models.create_model``).

    ``num_classes``, ``in_chans`` and ``img_size`` come from the dataset. Fields left ``None`` keep the model's
    own default and are not passed, so Euclidean models (which do not take the hyperbolic options) work with
    the same schema. ``kwargs`` passes any further model option through unchanged.
    """

    name: str = "hecnn_resnet18"
    width: int | None = 16  # base width (channels of the first stage); the paper's ResNets use 64
    layers: list[int] | None = field(default_factory=lambda: [1, 1, 1, 1])  # blocks per stage; None: the model's ([2, 2, 2, 2] for ResNet-18)
    learn_k: bool | None = None  # learnable curvature (HECNN+ default: true)
    k_init: float | None = None  # initial k > 0 (K = -1/k); default 1.0
    separate_decoder: bool | None = None  # encoder and decoder on separate manifolds (HECNN+ default: true)
    rescale: bool | None = None  # maximum distance rescaling (HECNN+ default: true)
    rescale_s: float | None = None  # rescaling steepness s (HECNN+ default: 2, classification)
    conv_impl: str | None = None  # "efficient" (HECNN+) or "unfold" (HCNN)
    bn_variant: str | None = None  # "hcnn" or "rhl"
    bias: bool | None = None  # Lorentz conv bias (HCNN: true, HECNN+: false)
    lift: str | None = None  # hybrid models: "rescale" or "clip_expmap"
    clip_r: float | None = None  # hybrid models with lift="clip_expmap": HCNN's clipping radius
    kwargs: dict[str, Any] = field(default_factory=dict)

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_model`` (everything but ``name``; ``None`` fields left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("name", "kwargs")}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(self.kwargs)
        return out


@dataclass
class DataConfig:
    """Dataset, split and loader settings (``lorentzcv.data.create_dataset``).

    ``batch_size`` is the **global** batch size, split evenly over the processes of a distributed run, so a
    run's optimisation does not depend on the number of processes.
    """

    name: str = "digits"
    root: str | None = None  # None: the dataset's default root or $LORENTZCV_DATA (embedded ones need none)
    download: bool = False
    val_fraction: float = 0.0  # > 0: hold out this fraction of train for model selection (best.pt)
    native_val: bool = False  # select on the dataset's own validation split (mini_imagenet, image_folder)
    batch_size: int = 128
    eval_batch_size: int | None = None  # None: batch_size
    num_workers: int = 0
    drop_last: bool = False
    train_subset: int | None = None  # use only this many training images (a seeded random subset; smoke runs)
    eval_subset: int | None = None  # use only this many validation/test images


@dataclass
class OptimConfig:
    """Optimizer (``lorentzcv.optim.create_optimizer``). Parameter groups: Euclidean (decay / no decay),
    ``manifold`` (``ManifoldParameter``, lr ``manifold_lr``) and ``curvature`` (every learnable ``k``)."""

    name: Literal["rsgd", "radamw", "sgd", "adamw"] = "rsgd"
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9  # rsgd/sgd only
    nesterov: bool = True  # rsgd/sgd only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # radamw/adamw only
    eps: float = 1e-8  # radamw/adamw only
    manifold_lr: float | None = None  # None: lr
    curvature_lr: float = 0.05  # demo value; the paper protocol (§8) uses 1e-4
    curvature_weight_decay: float = 0.0
    curvature_mode: Literal["aware", "naive", "naive_repaired"] = "aware"  # rsgd/radamw only
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the optimizer as is


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, a factor of every group's initial lr evaluated at each iteration.

    ``multistep``: ``gamma ** (number of milestones <= epoch)`` (docs/method.md §8: [60, 120, 160], 0.2); with
    ``manifold_skip_first_drop`` the ``manifold`` group skips the first drop (§8, [H]). ``cosine``: linear
    warm-up over ``warmup_epochs`` from ``warmup_start_factor``, then half a cosine down to ``min_lr_factor``.
    ``constant``: 1 (after the optional warm-up).
    """

    name: Literal["multistep", "cosine", "constant"] = "cosine"
    milestones: list[int] = field(default_factory=lambda: [60, 120, 160])
    gamma: float = 0.2
    manifold_skip_first_drop: bool = True
    warmup_epochs: float = 1.0
    warmup_start_factor: float = 0.1
    min_lr_factor: float = 0.0


@dataclass
class TrainConfig:
    """Loop settings: epochs, seed, device, mixed precision, gradient guards."""

    epochs: int = 10
    seed: int = 1
    device: str = "auto"  # auto: cuda (this process's LOCAL_RANK) if available, else cpu
    amp: Literal["none", "bf16", "fp16", "auto"] = "none"  # auto: bf16 where supported, else fp16 on cuda
    grad_clip_norm: float | None = None
    grad_clip_value: float | None = None
    label_smoothing: float = 0.0
    eval_test_every: int = 1  # evaluate the test split every N epochs (0: only after the last one)
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke tests)
    threads: int | None = 1  # torch.set_num_threads (demo: 1, fastest for tiny tensors); None: torch's default
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on CUDA)
    channels_last: bool = False
    find_unused_parameters: bool = False  # DDP option
    max_skipped_steps: int | None = 10  # stop after this many consecutive non-finite steps (null: never)
    ddp_timeout_s: float = 300.0  # DDP collectives time out (and the job stops) after this many seconds
    compile: bool = False  # torch.compile the training step's model (forward + backward; BENCHMARKS.md: compile time)


@dataclass
class OutputConfig:
    """Where a run writes ``config.yaml``, ``metrics.jsonl``/``.csv``, ``log.txt``, checkpoints and TensorBoard."""

    root: str = "runs"
    name: str | None = None  # None: "{data}_{model}"; the run dir is <root>/<name>-<timestamp> (see run_name)
    dir: str | None = None  # an exact run directory (overrides root/name)
    checkpoints: bool = True
    tensorboard: bool = True  # only if the tensorboard package is installed
    progress: bool | None = None  # progress bar; None: only when stderr is a terminal
    overwrite: bool = False  # replace the run in a non-empty output.dir (else refused; --resume continues it)

    def run_name(self, data: str, model: str) -> str:
        """The run directory's name (before ``-<timestamp>``): ``name`` with ``{data}`` replaced by the dataset
        actually used and ``{model}`` by the model's label; ``None`` (or empty) gives ``"{data}_{model}"``.

        Raises:
            ConfigError: ``name`` holds another ``{...}`` field or unbalanced braces.
        """
        template = self.name or "{data}_{model}"
        try:
            return template.format(data=data, model=model)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"output.name={self.name!r} may only use the fields {{data}} and {{model}} ({exc!r})"
                              ) from None


@dataclass
class Config:
    """A complete run description. ``Config()`` is the offline digits demo."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def model_label(self) -> str:
        """The model's name in run directory names (``{model}`` of ``output.name``): ``model.name``."""
        return self.model.name

    def validate(self) -> Config:
        """Check cross-field constraints (raises :class:`ConfigError`); returns ``self``."""
        _raise_first_failed([
            (self.data.batch_size >= 1, "data.batch_size must be >= 1"),
            (0.0 <= self.data.val_fraction < 1.0, "data.val_fraction must be in [0, 1)"),
            (not (self.data.native_val and self.data.val_fraction > 0),
             "data.native_val=true and data.val_fraction > 0 are exclusive; pick one validation split"),
            *_shared_checks(self),
        ])
        return self


#: ``train.device`` values: ``auto``, ``cpu``, ``cuda``/``cuda:N``, ``mps``, ``xpu``/``xpu:N``.
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|(cuda|xpu)(:\d+)?)$")


def _shared_checks(cfg: Config | MetricRunConfig) -> list[tuple[bool, str]]:
    """``(ok, message)`` of the constraints both run configs have (train, data loader, optimizer, schedule)."""
    t, d, o, sc = cfg.train, cfg.data, cfg.optim, cfg.schedule
    return [
        (t.epochs >= 1, "train.epochs must be >= 1"),
        (bool(_DEVICE_RE.match(t.device.strip().lower())),
         f"train.device must be auto, cpu, cuda, cuda:N, mps or xpu, got {t.device!r}"),
        (t.threads is None or t.threads >= 1, "train.threads must be >= 1, or null for torch's default"),
        (0.0 <= t.label_smoothing <= 1.0, "train.label_smoothing must be in [0, 1]"),
        (t.max_skipped_steps is None or t.max_skipped_steps >= 1,
         "train.max_skipped_steps must be >= 1, or null to never stop a run for skipped steps"),
        (t.ddp_timeout_s > 0, "train.ddp_timeout_s must be > 0 (seconds)"),
        (d.eval_batch_size is None or d.eval_batch_size >= 1, "data.eval_batch_size must be >= 1 or null"),
        (d.num_workers >= 0, "data.num_workers must be >= 0"),
        (o.lr >= 0.0, "optim.lr must be >= 0"),
        (o.manifold_lr is None or o.manifold_lr >= 0.0, "optim.manifold_lr must be >= 0 or null"),
        (o.curvature_lr >= 0.0, "optim.curvature_lr must be >= 0"),
        (o.weight_decay >= 0.0 and o.curvature_weight_decay >= 0.0,
         "optim.weight_decay and optim.curvature_weight_decay must be >= 0"),
        (o.momentum >= 0.0, "optim.momentum must be >= 0"),
        (o.eps > 0.0, "optim.eps must be > 0"),
        (len(o.betas) == 2, "optim.betas must have two entries, e.g. [0.9, 0.999]"),
        (all(0.0 <= b < 1.0 for b in o.betas), "optim.betas must be in [0, 1)"),
        (sc.gamma > 0.0, "schedule.gamma must be > 0"),
        (sc.warmup_epochs >= 0.0, "schedule.warmup_epochs must be >= 0"),
        (0.0 <= sc.warmup_start_factor <= 1.0, "schedule.warmup_start_factor must be in [0, 1]"),
        (0.0 <= sc.min_lr_factor <= 1.0, "schedule.min_lr_factor must be in [0, 1]"),
        (list(sc.milestones) == sorted(sc.milestones), "schedule.milestones must be increasing"),
        (t.eval_test_every >= 0, "train.eval_test_every must be >= 0"),
        (t.grad_clip_norm is None or t.grad_clip_norm > 0, "train.grad_clip_norm must be > 0 or null"),
        (t.grad_clip_value is None or t.grad_clip_value > 0, "train.grad_clip_value must be > 0 or null"),
        (t.max_steps_per_epoch is None or t.max_steps_per_epoch >= 1,
         "train.max_steps_per_epoch must be >= 1 or null"),
        (bool(cfg.output.run_name(d.name, cfg.model_label())), "output.name gives an empty run name"),
    ]


def _raise_first_failed(checks: list[tuple[bool, str]]) -> None:
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)



# ----------------------------------------------------------------------------------------------- metric learning


@dataclass
class MetricModelConfig:
    """Embedding model of a metric run (:func:`lorentzcv.models.embedding.create_embedding_model`,
    docs/method.md §7.1–7.2).

    ``head`` picks the geometry: ``euclidean`` (L2-normalised, Proxy-Anchor only), ``poincare`` (HIER's
    ``ToPoincare(c, clip_r)``), ``lorentz`` (LHIER: lifted onto a Lorentz manifold with ``k = k_init``,
    ``K = -1/k``, learnable with ``learn_k``). Pretrained weights are never downloaded by tests: pass
    ``--set model.pretrained=false`` to build offline, or ``model.pretrained_path=FILE``.
    """

    backbone: str = "convnet_small"  # timm name, "bninception", "dino_vits16", or the demo "convnet_small"
    head: Literal["euclidean", "poincare", "lorentz"] = "lorentz"
    embedding_dim: int = 128  # D (Lorentz points have 1+D coordinates)
    pretrained: bool = False  # ImageNet weights for the backbone (needs the hub or the HF cache)
    pretrained_path: str | None = None  # a local checkpoint (implies pretrained)
    pool: str | None = "auto"  # "auto" (GAP+GMP for CNNs, CLS token for ViTs), "avgmax", "avg", "max", null
    bn_freeze: bool = False  # batch norms of the backbone in eval mode (HIER's --bn_freeze)
    freeze_patch_embed: bool = False  # ViTs: requires_grad=False on patch_embed (HIER)
    layer_norm: bool = True  # LayerNorm (no affine) before the last Linear (HIER's --use_lastnorm)
    c: float = 0.1  # poincare head / HIER loss: curvature magnitude (K = -c)
    clip_r: float = 2.3  # poincare head / HIER loss, lorentz lift="clip": clipping radius
    k_init: float = 10.0  # lorentz head: initial k (10 = HIER's c = 0.1)
    learn_k: bool = True  # lorentz head: learnable curvature
    lift: Literal["rescale", "clip"] = "rescale"  # lorentz head: maximum distance rescaling or HIER's clip
    lift_scale: float = 1.0  # lorentz lift="rescale": factor on the linear output before rescaling
    neck: Literal["linear", "lorentz"] = "linear"  # lorentz head: Linear + lift, or the paper's LorentzLinear + rescaling
    rescale_s: float = 3.0  # lorentz head: softness s of maximum distance rescaling (3: the authors' code default)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the backbone (e.g. width)


@dataclass
class MetricDataConfig:
    """Dataset and loader of a metric run: a class-disjoint metric dataset (``lorentzcv datasets``).

    Retrieval is evaluated on ``query``→``gallery`` when the dataset has those splits (In-Shop), else
    leave-one-out on ``test`` (docs/method.md §7.4). ``batch_size`` is the global batch (split over DDP processes).
    ``val_fraction > 0`` holds whole training classes out (which ones depends on ``train.seed``) as a
    class-disjoint validation split, evaluated leave-one-out next to the test protocol and used for model
    selection (``best.pt``, by validation Recall@1); never select on the test split.
    """

    name: str = "digits_dml"
    root: str | None = None
    download: bool = False
    img_size: int | None = None  # metric transforms: crop size (null: the dataset's default, 224 for images)
    batch_size: int = 64  # global; a multiple of metric.images_per_class x processes
    eval_batch_size: int | None = None  # None: batch_size
    num_workers: int = 0
    train_subset: int | None = None  # use only this many training images (seeded random subset)
    eval_subset: int | None = None  # use only this many images of each evaluation split (and of val)
    val_fraction: float = 0.0  # > 0: hold out this fraction of the training *classes* (class-disjoint val)


@dataclass
class LossConfig:
    """The objective ``L = pa_weight * L_PA + hier_weight * L_HIER`` (docs/method.md §7.1–7.2).

    ``name="proxy_anchor"``: Proxy-Anchor only (the Euclidean baseline). ``name="hier"``: Proxy-Anchor plus the
    hierarchical LCA loss in the head's geometry: :class:`~lorentzcv.metric.HIERLoss` for a ``poincare`` head,
    :class:`~lorentzcv.metric.LHIERLoss` (LCAs as ``ManifoldParameter`` on the head's manifold) for ``lorentz``.
    """

    name: Literal["proxy_anchor", "hier"] = "hier"
    pa_margin: float = 0.1  # Proxy-Anchor delta
    pa_alpha: float = 32.0  # Proxy-Anchor alpha
    pa_weight: float = 1.0  # lambda_1
    hier_weight: float = 0.5  # lambda_2
    num_proxies: int = 512  # number of LCAs (HIER's --num_hproxies)
    tau: float = 0.1
    margin: float = 0.1  # HIER's --mrg
    topk: int = 20
    num_triplets: int = 50
    lca_init_radius: float = 2.07  # LHIER: tangent radius of the LCA init (HIER's 2.3 * 0.9)
    rescale_lcas: bool = False  # LHIER: maximum distance rescaling of the LCAs too (the paper's LHIER)


@dataclass
class MetricConfig:
    """HIER's training protocol knobs (docs/method.md §7.3) and the retrieval evaluation (§7.4)."""

    fc_lr_scale: float = 1.0  # lr multiplier of the head's Linear ("last layer")
    lca_lr_scale: float = 50.0  # lr multiplier of the LCAs
    proxy_lr_scale: float = 1.0e4  # lr multiplier of the Proxy-Anchor proxies
    warmup_epochs: int = 0  # backbone lr = 0 for this many epochs (HIER's --warmup_epochs; not a ramp)
    lr_reference_batch: int | None = None  # lr is scaled by data.batch_size / this (HIER: 180); null: no scaling
    images_per_class: int = 2  # class-balanced sampler (HIER's --IPC)
    gather_embeddings: bool = True  # DDP: losses on the embeddings of all processes (gradient-carrying gather)
    recall_ks: list[int] | None = None  # null: lorentzcv.metric.DATASET_KS[data.name], else (1, 2, 4, 8)
    map_at_r: bool = True  # also report MAP@R
    report: Literal["last", "best_test"] = "last"  # best_test adds HIER's protocol: the best epoch *on test* (labelled)
    eval_chunk_size: int = 5000  # queries per chunk of the retrieval evaluation


def _metric_schedule() -> ScheduleConfig:
    return ScheduleConfig(name="constant", warmup_epochs=0.0, manifold_skip_first_drop=False)


def _metric_optim() -> OptimConfig:
    return OptimConfig(name="radamw", lr=1e-3, weight_decay=1e-2, eps=1e-8, curvature_lr=1e-2)


def _metric_train() -> TrainConfig:
    return TrainConfig(epochs=10, grad_clip_value=10.0)


def _metric_loss() -> LossConfig:
    return LossConfig(num_proxies=64, num_triplets=20)  # demo: HIER's 512 LCAs x 50 triplets are slow on a CPU


@dataclass
class MetricRunConfig:
    """A metric-learning run (``task: metric``): HIER / LHIER / Proxy-Anchor through the training engine.

    ``MetricRunConfig()`` (``lorentzcv train --set task=metric``) is an offline LHIER demo on ``digits_dml`` with
    64 LCAs; ``configs/metric/table1/`` spell out HIER's protocol, ``configs/metric/demo/`` the Fashion-MNIST
    demos. ``train.grad_clip_value`` clamps every
    gradient element (HIER: 10), ``train.eval_test_every`` is HIER's ``--eval_freq``; ``train.amp="fp16"``
    runs float16 autocast + GradScaler (HIER's setting on GPUs; on a CPU it works but is slow, prefer ``bf16``).
    """

    task: Literal["metric"] = "metric"
    model: MetricModelConfig = field(default_factory=MetricModelConfig)
    data: MetricDataConfig = field(default_factory=MetricDataConfig)
    loss: LossConfig = field(default_factory=_metric_loss)
    metric: MetricConfig = field(default_factory=MetricConfig)
    optim: OptimConfig = field(default_factory=_metric_optim)
    schedule: ScheduleConfig = field(default_factory=_metric_schedule)
    train: TrainConfig = field(default_factory=_metric_train)
    output: OutputConfig = field(default_factory=OutputConfig)

    def model_label(self) -> str:
        """The model's name in run directory names (``{model}`` of ``output.name``): ``<backbone>_<head>``."""
        return f"{self.model.backbone}_{self.model.head}"

    def validate(self) -> MetricRunConfig:
        """Check cross-field constraints (raises :class:`ConfigError`); returns ``self``."""
        m, d, lo = self.metric, self.data, self.loss
        _raise_first_failed([
            (self.model.embedding_dim >= 1, "model.embedding_dim must be >= 1"),
            (m.images_per_class >= 1, "metric.images_per_class must be >= 1"),
            (d.batch_size >= 2 * m.images_per_class and d.batch_size % m.images_per_class == 0,
             f"data.batch_size={d.batch_size} must be a multiple of metric.images_per_class={m.images_per_class} "
             "holding at least two classes"),
            (0.0 <= d.val_fraction < 1.0, "data.val_fraction must be in [0, 1) (a fraction of the training classes)"),
            (min(m.fc_lr_scale, m.lca_lr_scale, m.proxy_lr_scale) >= 0, "metric.*_lr_scale must be >= 0"),
            (m.warmup_epochs >= 0, "metric.warmup_epochs must be >= 0"),
            (m.lr_reference_batch is None or m.lr_reference_batch >= 1, "metric.lr_reference_batch must be >= 1"),
            (m.recall_ks is None or (len(m.recall_ks) > 0 and min(m.recall_ks) >= 1),
             "metric.recall_ks must be a non-empty list of positive integers, or null"),
            (m.eval_chunk_size >= 1, "metric.eval_chunk_size must be >= 1"),
            (self.model.k_init > 0 and self.model.c > 0, "model.k_init and model.c must be > 0"),
            (self.model.rescale_s > 0, "model.rescale_s (softness of maximum distance rescaling) must be > 0"),
            (lo.num_proxies >= 2 and lo.topk >= 1 and lo.num_triplets >= 1 and lo.tau > 0,
             "loss.num_proxies >= 2, loss.topk >= 1, loss.num_triplets >= 1 and loss.tau > 0 are required"),
            (not (lo.name == "hier" and self.model.head == "euclidean"),
             "loss.name=hier needs a hyperbolic head (model.head=poincare for HIER, lorentz for LHIER); the "
             "Euclidean baseline is loss.name=proxy_anchor"),
            (not (lo.name == "proxy_anchor" and self.model.head == "lorentz"),
             "loss.name=proxy_anchor with model.head=lorentz is not supported; use loss.name=hier (LHIER) or "
             "model.head=euclidean/poincare"),
            (self.train.label_smoothing == 0.0, "train.label_smoothing has no meaning for metric learning; keep 0"),
            *_shared_checks(self),
        ])
        return self


AnyConfig = Config | MetricRunConfig
"""A classification :class:`Config` or a metric-learning :class:`MetricRunConfig`."""


TASKS = ("classification", "metric")
