# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,nbgrader,-all
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-kernelspec
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Lab 02 — ResNet-20 on CIFAR-10
#
# CIFAR-10: 60,000 colour images of 32×32 pixels in 10 classes (50,000 for training, 10,000 for testing). You will
# train **ResNet-20** (He et al., 2016, §4.2) with the course recipe — SGD with momentum 0.9, weight decay 5·10⁻⁴,
# batches of 128, **learning rate 0.1 for 5 epochs, then 0.01 for 5** — see what the drop does, and compare a
# second 10-epoch recipe. (*Momentum* keeps a running sum of past gradients, the *momentum buffer*, and steps along
# it; *weight decay* shrinks every weight a little each step; an *epoch* is one pass over the training images.)
#
# `SIZE`: *full* (the default on a GPU) and *laptop* (the default on a CPU) both train the course's experiment,
# ResNet-20 on all training images for 10 epochs (laptop runs the comparisons further down smaller); *smoke*
# (`LABKIT_SMOKE=1`, the tests) uses a few hundred synthetic images, so its figures only show that the code runs.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from labkit import runner
from labkit.device import amp_dtype, describe_device, model_device
from labkit.lab import choose_size
from labkit.labs import cifar10 as lab
from labkit.labs.cifar10 import data as cifar
from labkit.labs.cifar10.model import resnet20
from labkit.plots import image_grid
from labkit.results import check_against_reference, show_reference
from labkit.summary import layer_table
from labkit.tables import Table, show_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
NOTE = lab.size_note(CFG)  # "smoke size, synthetic data", "laptop size", "full size"
print(describe_device(CFG.device), f"· {SIZE} size: {WHY} · ResNet-{CFG.depth}, {CFG.epochs} epochs · {NOTE}")

# %% [markdown]
# ## A look at the data
#
# `runner.load_data` reads CIFAR-10 as uint8 tensors, from the official pickles (`download=True` fetches them) or
# an image folder `train/<class>/`. A copy **without a test split** gives none: 5,000 training images are held out
# instead and never trained on, and every figure calls that split **hold-out**, not test.

# %%
DATA = runner.load_data(lab.LAB, CFG.replace(download=True))  # download: fetch the official pickles if no copy is found
train_set, eval_set = DATA.source.train, DATA.source.eval
EVAL = DATA.split_label("test")  # "test", or "hold-out (5,000 of train)" for a copy without a test split
print(DATA.description)
print("train:", tuple(train_set.images.shape), train_set.images.dtype, f"· {EVAL}:", tuple(eval_set.images.shape))
print("images per class:", dict(zip(train_set.classes, train_set.labels.bincount(minlength=10).tolist())))
image_grid(train_set.images[:16], [train_set.classes[int(y)] for y in train_set.labels[:16]],
           title=f"the first 16 training images ({NOTE})")
plt.show()
assert train_set.images.dtype == torch.uint8 and train_set.images.shape[1:] == (3, 32, 32)

# %% [markdown]
# **Augmentation.** Every epoch each training image is shifted by up to 4 pixels and mirrored left–right with
# probability ½, so the network rarely sees the same picture twice. One image augmented eight times:

# %%
one = train_set.images[:1].repeat(8, 1, 1, 1)
augmented = cifar.augmentation()(one, torch.Generator().manual_seed(0))
image_grid(augmented, [f"draw {i}" for i in range(8)], title=f"one training image, augmented 8 times ({NOTE})")
plt.show()
assert augmented.shape == one.shape and not torch.equal(augmented, one)

# %% [markdown]
# ## ResNet-20
#
# A 3×3 convolution with 16 channels, then three stages of three *basic blocks* (two 3×3 conv + BatchNorm layers
# and a *shortcut* that adds the block's input to its output) on 32×32, 16×16 and 8×8 maps with 16, 32 and 64
# channels, global average pooling and one linear layer: 6·3 + 2 = 20 layers with weights. *BatchNorm* normalises
# each channel by the batch's mean and variance in training, by running averages of them in evaluation.

# %%
print(layer_table(resnet20(), (3, 32, 32), max_depth=2))
n_params = sum(p.numel() for p in resnet20().parameters())
print(f"ResNet-20 parameters: {n_params:,}")
assert n_params == 269_722

# %% [markdown]
# ## Your turn — write the training loop once
#
# Write **one epoch of training**. For every batch: `optimizer.zero_grad()`, forward pass, loss,
# `loss.backward()`, `optimizer.step()`. Return the mean loss and the accuracy over **every** training example of
# the epoch (the last batch is smaller; accuracy is top-1, `outputs.argmax(dim=1) == labels`). Also:
#
# * start with `model.train()` (the model may arrive in eval mode);
# * use the optimizer you are given, never create one inside;
# * when a `writer` (a TensorBoard `SummaryWriter`) is given, log each batch's loss with
#   `writer.add_scalar("loss/train", loss.item(), step)` at the **global** step `(epoch - 1) * len(loader) + i`.

# %% tags=["exercise"]
def train_one_epoch(model, loader, optimizer, loss_fn, writer=None, epoch=1):
    """One epoch of training: (mean loss, accuracy as a fraction) over every training example."""
    ### BEGIN SOLUTION
    model.train()
    total_loss, correct, count = 0.0, 0, 0
    for i, (images, labels) in enumerate(loader):
        optimizer.zero_grad()
        outputs = model(images)
        loss = loss_fn(outputs, labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * labels.size(0)
        correct += (outputs.argmax(dim=1) == labels).sum().item()
        count += labels.size(0)
        if writer is not None:
            writer.add_scalar("loss/train", loss.item(), (epoch - 1) * len(loader) + i)
    return total_loss / count, correct / count
    ### END SOLUTION


# %% nbgrader={"points": 6}
from labkit.labs.cifar10.training_loop import check_train_one_epoch

check_train_one_epoch(train_one_epoch)

# %% [markdown]
# ## Your turn — the test loop
#
# Return the mean cross-entropy per image and the fraction of images classified correctly, over all images. The
# course report asked to complete this `test()` from its `train()`.

# %% tags=["exercise"]
def test(model, loader, device):
    """(mean cross-entropy per image, accuracy as a fraction) of `model` over `loader`."""
    ### BEGIN SOLUTION
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            total_loss += F.cross_entropy(outputs, labels, reduction="sum").item()
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            count += labels.numel()
    return total_loss / count, correct / count
    ### END SOLUTION


# %% nbgrader={"points": 3}
from labkit.labs.cifar10.check import check_test_loop

check_test_loop(test)

# %% [markdown]
# Your two functions train the lab's network for one epoch, with the optimizer created once, before the loop:

# %%
torch.manual_seed(CFG.seed)
device = DATA.train.device  # where the data were loaded: the run's device, decided once
mine = lab.LAB.build_model(CFG, DATA.info).to(device)
optimizer = torch.optim.SGD(mine.parameters(), lr=CFG.lr, momentum=CFG.momentum, weight_decay=CFG.weight_decay)
for epoch in range(1, 2):
    train_loss, train_accuracy = train_one_epoch(mine, DATA.train, optimizer, torch.nn.CrossEntropyLoss(),
                                                 epoch=epoch)
    eval_loss, eval_accuracy = test(mine, DATA.eval["test"], device)
    print(f"epoch {epoch}: train loss {train_loss:.3f}, accuracy {train_accuracy:.3f} · {EVAL} loss "
          f"{eval_loss:.3f}, accuracy {eval_accuracy:.3f}")
assert torch.isfinite(torch.tensor(train_loss)) and 0.0 <= train_accuracy <= 1.0 and 0.0 <= eval_accuracy <= 1.0

# %% [markdown]
# ## From your loop to `fit()`
#
# `labkit.engine.fit` does what your two functions do, with the optimizer created once and a scheduler setting the
# learning rate each epoch, plus what a long run needs: checkpoints, resuming, progress bars and a history.

# %% [markdown]
# ## The course recipe: lr 0.1 for 5 epochs, then 0.01
#
# Press **Train** to retrain (the lr slider sets the first learning rate; it drops to a tenth halfway). The
# evaluation split is measured after every epoch for the curves only: nothing is chosen by it.

# %%
PROBE = lab.OptimizerProbe()  # records the lr and SGD's momentum buffer of every epoch (used further down)


def train_course(epochs, lr, plot):
    plot.title = f"course recipe, ResNet-{CFG.depth} — {NOTE} ('test' is the {EVAL} split, monitoring only)"
    return runner.run(lab.LAB, CFG.replace(epochs=epochs, lr=lr), data=DATA, callbacks=[plot, PROBE],
                      write_files=False, checkpoints=False)


panel = TrainingPanel(train_course, epochs=CFG.epochs, lr=CFG.lr, epoch_choices=(2, 30, 1),
                      lr_range=(1e-3, 1.0), title=f"Lab 02 · ResNet on CIFAR-10, course recipe · {NOTE}")
panel.show()
course = panel.result
assert course.history.lr[0] == CFG.lr and course.history.lr[-1] < CFG.lr

# %%
lab.plot_course_curves(course)
plt.show()
show_table(lab.epoch_table(course))
assert course.history.last("test_accuracy") > 0.2, "the network should beat chance (0.1) clearly"

# %% [markdown]
# Your `test()` against the engine's evaluation after the last epoch. Where the run trained in mixed precision
# (bf16 on a CPU that runs it natively, or a GPU), the engine evaluated under autocast too, so a few of the
# predictions may differ from your fp32 `test()`; in fp32 on a CPU the two agree to the last digit.

# %%
device = model_device(course.model)
eval_loader = DATA.eval["test"]  # the test (or hold-out) images, normalised, in batches of 1,000
loss, accuracy = test(course.model, eval_loader, device)
print(f"test() on the {EVAL} split: loss {loss:.4f}, accuracy {accuracy:.4f}")
check_test_loop(test, course.model, eval_loader, device)
exact = device.type == "cpu" and amp_dtype(device, CFG.amp) is None  # fp32 on a CPU: the same arithmetic
assert abs(accuracy - course.history.last("test_accuracy")) < (1e-6 if exact else 0.01)

# %% [markdown]
# ### What you should see: the reference run
#
# The committed laptop-size reference (`labkit reproduce cifar10 --size laptop`, in `results/cifar10/laptop/`):
# the course recipe (`course`), and at the comparison size (ResNet-8, 5,000 images: `course_small`) the course
# report's re-created optimizer (further down) and the fast recipe. At laptop size your course run should end
# within 5 points of it.

# %%
REF = show_reference("cifar10", "laptop", figures=("course/curves.png", "optimizer_recreation.png", "recipes.png"))
if SIZE == "laptop":
    check_against_reference("cifar10", "laptop", "course", "holdout_accuracy",
                            course.final["test"]["accuracy"], tolerance=0.05)

# %% [markdown]
# And the full-size reference (`labkit reproduce cifar10 --size full`: ResNet-20 on 45,000 images, evaluated on the
# 5,000-image hold-out, one run per recipe).

# %%
show_reference("cifar10", "full", figures=("course/curves.png", "recipes.png"))
if SIZE == "full":
    check_against_reference("cifar10", "full", "course", "holdout_accuracy",
                            course.final["test"]["accuracy"], tolerance=0.05)

# %% [markdown]
# ### Question 1 — what happens when the learning rate drops from 0.1 to 0.01, and why?
#
# The course report answered: "由于 1r 变小,能够修正的最小步长变大了" (as lr shrinks, the smallest correctable
# step grows; `002_12677c9053a9d06b.txt`). Look at the epochs around the drop in your curves and the references.

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# **What:** in the epoch right after the drop, train and hold-out accuracy jump up together and the
# losses fall sharply; afterwards they improve only slowly. At full size (ResNet-20, 45,000 images) hold-out
# accuracy went from 0.600 after epoch 5 to 0.733 after epoch 6, then slowly up to 0.755 (epoch 9) and 0.737
# after epoch 10 — one epoch's hold-out accuracy still moves by a point or two at lr 0.01. Your own run's
# table above gives the laptop size's numbers. (The report's "smallest correctable step grows" has it
# backwards: a smaller lr makes every step smaller.)
#
# **Why:** SGD follows the gradient of a mini-batch of 128 images, a noisy estimate of the gradient over
# all training images, and each step is lr × (true gradient + noise). At lr 0.1 the weights keep moving
# around the floor of the region they are in without settling: the measured loss is the average over
# that moving cloud, above the bottom. Dividing lr by 10 shrinks every step tenfold, the weights settle
# within a few hundred steps, and loss and accuracy improve at once. The noise is not the whole story:
# full-batch gradient descent, with no noise at all, also oscillates at large learning rates — at the
# edge of stability the sharpness of the loss (its largest curvature) rises until it reaches about 2/lr
# and stays there, and the loss goes up and down over short stretches while still falling over the long
# run (Cohen et al., 2021) — and a smaller lr lets the weights go down into sharper parts of the valley.
#
# **BatchNorm and weight decay.** Almost every convolution of ResNet-20 is followed by BatchNorm, which
# makes the loss independent of the scale of that convolution's weights w. Then the gradient shrinks as
# 1/‖w‖ and a step turns w by an angle proportional to lr/‖w‖²: that ratio is the *effective* learning
# rate. Weight decay (5·10⁻⁴ here) keeps shrinking ‖w‖, which keeps the effective learning rate high
# during the lr-0.1 phase (without it ‖w‖ would grow and the effective rate decay on its own); the
# drop divides the effective rate by 10 at once, because ‖w‖ does not change at that instant (van
# Laarhoven, 2017; Zhang et al., 2019). That is part of why the jump is immediate.
#
# **The price:** at lr 0.01 the weights move slowly, so how long the run stays at the high rate
# matters; the course report's re-created optimizer (below) drops to 0.01 after the first epoch instead of
# the fifth (and loses its momentum too, so it is not a clean test of the drop's timing alone).
# ### END SOLUTION

# %% [markdown]
# ### Question 2 — how do train and test accuracy relate?
#
# The course report: "二者都呈现了…正确率也在单调增长" (both rise monotonically;
# `002_12677c9053a9d06b.txt`). Compare your train and hold-out (or test) curves epoch by epoch.

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# * They measure different things. Train accuracy is averaged **during** the epoch over **augmented**
#   images, while the weights are still changing, with BatchNorm using batch statistics; hold-out (or
#   test) accuracy is measured **after** the epoch on clean images in eval mode. So hold-out accuracy can
#   be *higher* than train accuracy early on. Whether it jumps around at lr 0.1 depends on the run: the full
#   reference's hold-out accuracy rose at every epoch of the lr-0.1 phase and moved by a point or two after
#   the drop (0.755 → 0.737 in the last epoch); read your own curves rather than a rule. Nor is the
#   report's "单调增长" (monotone growth) a law: neither curve is guaranteed to rise every epoch.
# * Both rise together at first: the network learns features that hold for all images. Trained much
#   longer, a network of this kind keeps raising its train accuracy towards 100 % while held-out accuracy
#   levels off; the difference is the **generalisation gap**, the part of training accuracy that comes
#   from fitting the training images themselves, which augmentation and weight decay keep smaller. Ten
#   epochs are not long enough for that here: at full size the last epoch's train accuracy was 0.775
#   against 0.737 on the hold-out, 3.8 points; train accuracy there is also measured on augmented images
#   with the weights still moving, which lowers it.
# * Hold-out (or test) accuracy is what we care about (new images); train accuracy says whether the
#   model can fit at all. Choosing settings or the epoch to keep by looking at test accuracy makes it
#   optimistic: this lab chooses nothing by it (the per-epoch curves are monitoring only, and a run
#   keeps the last epoch's weights); a real protocol tunes on a validation split held out of training.
# ### END SOLUTION

# %% [markdown]
# ## The course report's bug: the optimizer re-created every epoch
#
# The course report's loop (`002_12677c9053a9d06b.txt`) runs, inside the loop over epochs,
# `optimizer = optim.SGD(model.parameters(), lr=lr, weight_decay=5e-4)` with `lr = 0.01`: from the second epoch on
# the run trained at lr 0.01 with **no momentum at all** (SGD's default, 0), whatever the first optimizer had.
# `lab.optimizer_recreation` retrains the recipe that way (same data and seed) beside a correct course run, with
# the lr and the norm of the momentum buffer at the start of each epoch. At laptop size this comparison and the
# next one train ResNet-8 on 5,000 of the images (`CFG.compare_depth`, `CFG.compare_subset`), a minute or two
# each, so that the notebook stays near 20 minutes; at full size they train the course model beside your run.

# %%
SMALL = lab.LAB.comparison(CFG)  # the comparisons' config: CFG itself where no smaller one is set
SMALL_DATA = DATA if SMALL == CFG else runner.load_data(lab.LAB, SMALL)
print(f"comparisons: ResNet-{SMALL.depth} on {len(SMALL_DATA.source.train):,} training images")
recreation = lab.optimizer_recreation(SMALL if SMALL != CFG else course.config, SMALL_DATA,
                                      correct=(course, PROBE) if SMALL == CFG else None)
lab.plot_recreation(recreation)
plt.show()
rows = [[name, f"{trace.lr[0]:g} → {trace.lr[-1]:g}", f"{max(trace.momentum_start):.3g}",
         f"{recreation.runs[name].final['test']['accuracy']:.4f}"] for name, trace in recreation.traces.items()]
show_table(Table(["run", "lr (first → last epoch)", "largest momentum buffer at an epoch's start",
                  f"{EVAL} accuracy"], rows, numeric_from=2))
assert max(recreation.traces[lab.RECREATED].momentum_start) == 0.0

# %% [markdown]
# Why did this bug go unnoticed in the report, and what did it change in the run? Use the table.

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# A new optimizer is a valid optimizer, so nothing fails: the loss still falls and the accuracy still
# rises. It changed two things. The learning rate: the run trained at 0.1 for one epoch and at 0.01 for
# the other nine instead of five and five (a scheduler attached to the first optimizer cannot change the
# later ones). The momentum: the report's `optim.SGD(model.parameters(), lr=lr, weight_decay=5e-4)` sets
# none (momentum 0), so from epoch 2 on it was plain SGD: no buffer at all (norm 0 in the middle panel,
# against the buffer the correct run carries over). The table gives what that cost in your run; a low lr
# can even lead early on (its quick gain comes at once, as the drop's does) and fall behind later, with
# nothing in the loss curve to say why. The lesson: create the optimizer once, and log the learning rate
# of every epoch (here `history.lr`), so a schedule that is not the intended one shows.
# ### END SOLUTION

# %% [markdown]
# ## A better 10-epoch recipe
#
# Same model, data, batch size and epochs; three changes:
#
# * **one-cycle schedule**: the lr rises from 0.02 to 0.2 over the first 20 % of the steps (*warm-up*), then falls
#   along a cosine to almost 0;
# * **Nesterov momentum** (the gradient is taken at the look-ahead point);
# * **label smoothing 0.1**: the target is 0.91 for the true class and 0.01 for the others.
#
# The references above show how it compares at each size (one run per recipe).

# %%
fast = runner.run(lab.LAB, lab.LAB.comparison(lab.LAB.config(SIZE, "fast", epochs=course.config.epochs)),
                  data=SMALL_DATA, write_files=False, checkpoints=False)
base = recreation.runs[lab.CORRECT]  # the course recipe on the same model and images
runs = {f"course (lr {base.config.lr:g} → {base.config.lr * base.config.gamma:g})": base, "fast (one-cycle)": fast}
lab.plot_recipes(runs)
plt.show()
for name, run in runs.items():
    print(f"{name:28s} train accuracy {run.history.last('train_accuracy'):.4f}, {EVAL} accuracy "
          f"{run.final['test']['accuracy']:.4f}, {run.seconds:.0f} s")
assert fast.history.last("test_accuracy") > 0.2

# %% [markdown]
# ## Per-class accuracy and mistakes
#
# Which classes does the course model find hardest, and which does it confuse with each other?

# %%
preds = lab.predictions(course.model, eval_loader)
per_class = lab.per_class_accuracy(preds, eval_set.labels)
lab.plot_per_class(per_class, eval_set.classes, EVAL, title=f"per-class accuracy\n{lab.run_title(course)}")
plt.show()
images, titles = lab.misclassified(preds, eval_set, count=8)
image_grid(images, titles, title=lab.run_title(course, f"misclassified {EVAL} images"), empty="no mistakes")
plt.show()
confusion = lab.most_confused(preds, eval_set.labels, eval_set.classes, count=5)
show_table(Table(["true class", "predicted as", "images"], confusion, numeric_from=2))
assert abs(per_class.nanmean().item() - (preds == eval_set.labels).float().mean().item()) < 0.05

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The answer is your run's: name the classes with the lowest accuracy and the largest off-diagonal counts
# of the table. On CIFAR-10 these are usually pairs that look alike at 32×32 pixels — cat and dog (two
# four-legged pets), deer and frog or horse (animals on grass or earth), automobile and truck (wheeled
# vehicles), ship and airplane (objects on a blue background of sky or water).
# ### END SOLUTION

# %% [markdown]
# ## At full size, from the command line
#
# ```
# labkit run cifar10 --recipe course            # ResNet-20, 10 epochs, lr 0.1 → 0.01 after epoch 5
# labkit run cifar10 --recipe fast --compile    # one-cycle; torch.compile on CUDA
# labkit run cifar10 --help                     # every setting, with its default at each size
# ```
#
# Each run writes curves, metrics, TensorBoard logs and checkpoints under `runs/cifar10/`. There is **no "best"
# checkpoint**: keeping the epoch with the best test accuracy would make that accuracy optimistic.
