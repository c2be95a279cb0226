"""Every config field, with its default and what it means. Recipe files override a few of these.

Batch sizes are global (all devices, all hosts). Learning rates are written as in the recipe they
come from, next to `schedule.reference_batch_size`; they are scaled linearly when the global batch
differs. Both the JAX side (main.py) and the MindSpore side (ascend_port) read these files, so this
module imports nothing but ml_collections.
"""

from ml_collections import ConfigDict, config_dict


def get_config() -> ConfigDict:
    c = ConfigDict()
    c.seed = 0  # model init, data order and dropout all derive from it
    c.export_ema = False  # --mode=export / eval of a workdir: the EMA weights (train.ema_decay)
    c.init_from = ""  # canonical .safetensors to start from (or to evaluate in --mode=eval)

    c.model = ConfigDict()
    c.model.name = "hardnet68"  # a name from models.names()
    c.model.num_classes = 1000
    # compute dtype: float32 | bfloat16 | float16 (params/BN stats stay float32; float16 trains
    # with dynamic loss scaling, train_lib/loss_scale.py)
    c.model.dtype = "float32"
    c.model.drop_rate = config_dict.placeholder(float)  # classifier dropout; None = variant default
    c.model.drop_path_rate = config_dict.placeholder(float)  # stochastic depth; None = default

    c.data = ConfigDict()
    c.data.source = (
        "tfds:imagenet2012"  # tfds:<name>[:<version>] | folder:<path> | digits | synthetic
    )
    c.data.data_dir = ""  # TFDS data dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
    c.data.manual_dir = (
        ""  # TFDS manual dir with the ILSVRC2012 tars ('' = <data_dir>/downloads/manual)
    )
    c.data.train_split = "train"
    c.data.eval_split = "validation"  # a folder source uses val/ when this is 'validation'
    c.data.image_size = 224  # train crop and eval crop size
    c.data.crop_pct = config_dict.placeholder(
        float
    )  # eval resize = size / crop_pct; None = model's
    c.data.interpolation = config_dict.placeholder(str)  # bilinear | bicubic; None = model's
    c.data.crop_min = 0.08  # random-resized-crop area fraction bounds [crop_min, crop_max]
    c.data.crop_max = 1.0
    c.data.ratio_min = 3.0 / 4.0  # random-resized-crop aspect-ratio (w/h) bounds
    c.data.ratio_max = 4.0 / 3.0
    c.data.random_flip = True  # random horizontal flip in training (off for digits and text)
    c.data.shuffle_buffer = 16_384  # examples per host
    c.data.cache = False  # cache the undecoded bytes in RAM (about 150 GB for ImageNet)
    c.data.num_workers = -1  # tf.data private threadpool size; -1 = AUTOTUNE
    c.data.prefetch = 2  # batches prefetched to device
    c.data.num_train_examples = config_dict.placeholder(int)  # None = from the source
    c.data.synthetic_num_classes = 1000  # source 'synthetic': labels are drawn from [0, this)
    c.data.synthetic_eval_examples = 50_000  # source 'synthetic': size of its eval split
    # Augmentations of the transformer recipes, with timm's definitions (input_pipeline/
    # augment_rules.py). Order after crop and flip: auto_augment, colour jitter; random erasing
    # acts on the normalised image (on device on the JAX side).
    # '' | 'imagenet' (AutoAugment's ImageNet policy = timm 'original'[-mstd<f>]) | timm's
    # RandAugment string 'rand-m<M>[-n<N>][-mstd<f>][-mmax<M>][-p<f>][-inc<0|1>]', e.g.
    # 'rand-m9-mstd0.5-inc1' (2 ops of the increasing set, magnitude ~ N(9, 0.5) of 10).
    c.data.auto_augment = ""
    # Colour jitter strength s (torchvision ColorJitter(s, s, s)); timm ignores it when
    # auto_augment is set, here both apply, so recipes with auto_augment leave it 0.
    c.data.color_jitter = 0.0
    # Mixup / cutmix as timm's Mixup (train batches only; label smoothing applies to the mixed
    # targets, cutmix lam is corrected to the pasted area). Alpha 0 = off.
    c.data.mixup = 0.0  # mixup alpha: lam ~ Beta(alpha, alpha)
    c.data.cutmix = 0.0  # cutmix alpha
    c.data.mixup_prob = 1.0  # probability that a batch / pair / example is mixed at all
    c.data.mixup_switch_prob = 0.5  # with both alphas set: probability of cutmix over mixup
    c.data.mixup_mode = "batch"  # batch (one lam per batch) | pair | elem (one per example)
    c.data.random_erase = 0.0  # random erasing probability (timm mode 'pixel', one rectangle)

    c.train = ConfigDict()
    c.train.batch_size = 256  # global
    c.train.accum_steps = (
        1  # gradient accumulation: batch_size is split into this many micro-batches
    )
    c.train.epochs = 150
    c.train.steps = config_dict.placeholder(int)  # overrides epochs when set
    c.train.stop_after_steps = config_dict.placeholder(
        int
    )  # end this run early (time-limited jobs); rerun resumes
    c.train.label_smoothing = 0.0
    # How the smoothing mass a is spread over K classes. 'uniform': (1 - a) * one_hot + a / K
    # (optax.smooth_labels, timm, PyTorch CrossEntropyLoss); 'others': 1 - a on the label and
    # a / (K - 1) on every other class (the MindSpore model zoo's CrossEntropySmooth).
    c.train.label_smoothing_mode = "uniform"
    c.train.grad_clip_norm = config_dict.placeholder(float)  # global-norm clipping; None = off
    # Periodic actions (train_lib/periodic.py): each has a period in steps or in epochs,
    # <action>_every_steps or <action>_every_epochs, exactly one of the two > 0 (0 = unset). To
    # use the other form set the default one to 0, e.g. --config.train.log_every_steps=0
    # --config.train.log_every_epochs=0.5. Epochs become steps rounded down (at least 1).
    c.train.log_every_steps = 50  # also logs at the run's last step
    c.train.log_every_epochs = 0.0
    c.train.eval_every_steps = 0
    c.train.eval_every_epochs = 1.0  # also evaluates at the end of the schedule
    c.train.checkpoint_every_steps = 1000  # also checkpoints at the run's last step
    c.train.checkpoint_every_epochs = 0.0
    c.train.keep_checkpoints = 3
    c.train.eval_batch_size = config_dict.placeholder(int)  # None = train.batch_size
    c.train.freeze_backbone_epochs = 0.0  # fine-tuning: only the classifier learns for the
    # first N epochs (0 = off): the backbone's lr is 0 for round(N * steps per epoch) steps; its
    # BatchNorm running statistics still follow the new data (BN stays in train mode, as timm's)
    # Moving average of the weights (params and BatchNorm statistics), as timm's ModelEmaV3:
    # checkpointed, evaluated next to the raw weights ('eval_ema' rows), exported with export_ema.
    c.train.ema_decay = 0.0  # per optimizer step, e.g. 0.99996; 0 = off
    c.train.ema_warmup = False  # decay min(ema_decay, 1 - (1 + step) ** -2/3) (timm's warmup)
    c.train.tensorboard = True  # TensorBoard events in <workdir>/tensorboard (needs TensorFlow)

    c.optim = ConfigDict()
    # sgd | rmsprop | adamw, each in the one form PyTorch, MindSpore and optax share here (one
    # step of each is compared across the three in tests/test_step_parity.py): sgd a = m*a + g
    # (+ wd*w, coupled), w -= lr*a, or lr*(g + m*a) with Nesterov; rmsprop TF's form (eps in the
    # sqrt, mean square from 1, lr inside the momentum, coupled wd); adamw decoupled wd lr*wd*w.
    c.optim.name = "sgd"
    c.optim.momentum = 0.9  # sgd and rmsprop
    c.optim.nesterov = True  # sgd
    c.optim.weight_decay = 1e-4
    c.optim.decay_norm_and_bias = True  # False: no decay on norm scales/biases and biases
    c.optim.rmsprop_decay = 0.9
    c.optim.eps = 1e-3  # rmsprop: added inside the sqrt (TF/MindSpore placement)
    c.optim.adam_b1 = 0.9
    c.optim.adam_b2 = 0.999
    c.optim.adam_eps = 1e-8
    # Fine-tuning: the backbone (every weight but the classifier) learns at lr * this. An
    # init_from of another class count loads all but the classifier, which starts fresh.
    c.optim.backbone_lr_scale = 1.0  # 1.0 = same lr as the head

    c.schedule = ConfigDict()
    # cosine | linear | step (each after a linear warmup) | zoo_cosine: the MindSpore model zoo's
    # HarDNet 'cosine' (src/lr_scheduler.py): after the warmup, lr_max * (T - i) / D *
    # 0.5 * (1 + cos(0.94 * pi * i / D)) + lr_end at 0-based step i (T steps, D = T - warmup).
    c.schedule.name = "cosine"
    c.schedule.lr_max = 0.05  # peak lr at reference_batch_size
    c.schedule.lr_init = 0.0  # warmup start
    c.schedule.lr_end = 0.0  # final lr (cosine, linear)
    c.schedule.warmup_epochs = 0.0
    # The schedule's count at the first optimizer step: 0 (optax; the zoo's HRNet linear) or 1
    # (zoo generators whose warmup reads lr_init + inc * (i + 1): HLG, HarDNet). zoo_cosine's
    # decay term always reads the 0-based step, as in the zoo.
    c.schedule.first_step = 0
    c.schedule.reference_batch_size = 256  # lr_* are scaled by batch_size / this
    c.schedule.boundaries_epochs = (30, 60, 90)  # step schedule
    c.schedule.decay_factor = 0.1  # step schedule

    c.parallel = ConfigDict()
    c.parallel.mode = "jit"  # jit (global batch, synced BN) | pmap (per-device BN, pmean grads)

    # --mode=benchmark (synthetic data, train.batch_size / eval_batch_size, data.image_size).
    c.benchmark = ConfigDict()
    c.benchmark.warmup_steps = 2  # untimed steps after compilation
    c.benchmark.steps = 10  # timed steps per measurement
    c.benchmark.modes = "train,eval"  # which steps to measure
    c.benchmark.peak_tflops = config_dict.placeholder(float)  # per device; None = built-in table
    c.benchmark.analyze_batch = 1  # --mode=analyze: batch of the compiled memory figures; 0 = skip

    # MindSpore side (python -m ascend_port). Checkpoint and eval intervals, batch sizes and
    # keep-N are the train.* fields above, shared with the JAX side.
    c.ascend = ConfigDict()
    c.ascend.device_target = "Ascend"  # Ascend | GPU | CPU
    c.ascend.mode = "graph"  # MindSpore execution mode: graph (compiled) | pynative (eager)
    c.ascend.dataset_sink = config_dict.placeholder(bool)  # None = on unless CPU; sink mode
    # runs a whole epoch per call, so logs, checkpoints and evals happen at epoch ends only
    c.ascend.amp_level = "O2"  # O0 | O1 | O2 | O3 (CPU always trains in float32)
    c.ascend.loss_scale = 1024.0  # fp16 loss scale: the fixed value, or the dynamic one's start
    c.ascend.loss_scale_mode = "dynamic"  # dynamic (DynamicLossScaleManager) | fixed (the seeds')
    c.ascend.export_format = "MINDIR"  # MINDIR | ONNX: --mode=export writes it next to the
    # canonical .safetensors in <workdir>/export/
    c.ascend.export_batch_size = 1  # batch baked into the exported graph (shapes are fixed)
    return c
