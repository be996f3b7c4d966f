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
# # Lab 01 — Function fitting with a multilayer perceptron
#
# A small neural network learns the function
#
# $$f(x) = x^2 + 2\sin x + \cos(x-1) - 5, \qquad x \in [-4, 4]$$
#
# from 200 samples. You will vary the **number of epochs** and the **learning rate**, see what each
# does to the learnt curve, and then fit a function of your own.
#
# Every epoch here is one *full-batch* gradient step over all 200 points, so thousands of epochs take
# seconds. The training loop is `labkit.engine.fit`, the same one the later labs use for CNNs and
# Transformers.
#
# The laptop and full sizes are the same here (the course's own numbers of epochs): a whole Run All
# at laptop size took 4 min 15 s (measured with `LABKIT_SIZE=laptop jupyter nbconvert --execute`, one
# thread of this course's 2-core CPU while four other jobs ran, load average ~9); the 50,000-epoch run
# is most of it.
# *Smoke size* (`LABKIT_SMOKE=1`, the tests) trains a few hundred epochs only: its figures say so and
# its numbers are not the lab's results.

# %%
import matplotlib.pyplot as plt
import torch

from labkit import runner
from labkit.device import describe_device
from labkit.lab import choose_size
from labkit.labs import function_fitting as lab
from labkit.labs.function_fitting.model import MLP
from labkit.results import check_against_reference, show_reference
from labkit.tables import show_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
print(describe_device(CFG.device), f"· {SIZE} size: {WHY}")

# %% [markdown]
# ## The target and the model
#
# `runner.run(lab.LAB, CFG)` samples $f$, builds `MLP(1, (64, 64), 1)` — two hidden layers of 64 `tanh` units and a
# **linear output layer** — and trains it with plain SGD on the mean squared error. On $[-4, 4]$ the
# target spans about −6.1 (near $x = -1$) to 12.8 (at $x = -4$): half of the 200 training targets are
# below zero, so a network that fits $f$ already outputs negative numbers.

# %%
x, y = lab.sample(lab.course_function)
model = MLP(1, (64, 64), 1)
print(model)
print("parameters:", sum(p.numel() for p in model.parameters()))
print(f"f on [-4, 4]: {y.min():.1f} … {y.max():.1f}; {(y < 0).float().mean():.0%} of the {len(y)} targets "
      "are below zero")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(x, y, "k")
ax.axhline(0, color="grey", lw=0.8)
ax.set_title("the target f(x) = x² + 2 sin x + cos(x−1) − 5")
ax.set_xlabel("x")
ax.set_ylabel("f(x)")
ax.grid(alpha=0.3)
plt.show()
assert y.min() < -6 and 12.7 < y.max() < 12.9

# %% [markdown]
# ## Try it: epochs and learning rate
#
# Move the sliders and press **Train**. The curves are redrawn while the network trains.

# %%
def train_from_panel(epochs, lr, plot):
    return runner.run(lab.LAB, CFG.replace(epochs=epochs, lr=lr), callbacks=[plot], write_files=False,
                      checkpoints=False).history


panel = TrainingPanel(train_from_panel, epochs=CFG.epochs, lr=CFG.lr,
                      epoch_choices=[100, 500, 1000, 2000, 5000, 10000, 50000],
                      title=f"Lab 01 · MLP on f(x) · {SIZE} size")
panel.show()
assert panel.result is not None and len(panel.result) == CFG.epochs

# %% [markdown]
# ## Exercise A — more epochs
#
# Same learning rate (0.005), same seed; only the number of epochs changes. At laptop and full size that
# is 61,100 epochs in all (each full-batch epoch costs about 1 ms on one CPU thread). The runs share the
# seed, so a longer run retraces the shorter ones: the loss (right) is one curve, with each run's end
# marked on it.

# %%
by_epochs = lab.sweep(CFG.epochs_sweep, "epochs", lr=CFG.lr)
lab.plot_fits(by_epochs, "epochs", note=lab.size_note(SIZE))
plt.show()
show_table(lab.results_table(by_epochs, "epochs"))
mses = [r.mse for r in by_epochs.values()]
assert mses[-1] < mses[0] / 2, "more epochs should fit clearly better"

# %% [markdown]
# **Question A.** What do more epochs do to the learnt curve and to the loss, and why does "train
# longer" stop paying off? Use the table's numbers.

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Each epoch is one full-batch gradient step, so more epochs carry the weights further along the same
# path down the loss surface (the runs share the seed: the loss is one curve). Measured in the reference
# run (SGD, lr 0.005): the MSE against f is 3.93 after 100 epochs (only the overall bowl of x²), 0.122
# after 1,000 (the wiggles of 2 sin x appear), 0.0038 after 10,000 and 0.00046 after 50,000, when the
# curve lies on f. On the log–log loss plot the curve falls along a roughly straight line: each tenfold
# increase in epochs divides the MSE by a similar factor (about 30 from 100 to 1,000 and from 1,000 to
# 10,000), but costs ten times the time, so each extra epoch buys less and less in absolute terms (the
# 49,000 epochs after the first 1,000 remove 0.12 of MSE; the first 1,000 removed about 24). With
# noise-free, densely sampled data training longer never makes the fit worse here; it stops paying off
# when the error is already below what you need. Along the way the loss is not monotone: between about
# epoch 350 and 700 it spikes (to about 8 from 0.3) and recovers, a sign that lr 0.005 is close to the
# largest stable step for this network.
# ### END SOLUTION

# %% [markdown]
# ## Exercise B — the learning rate
#
# Same number of epochs, learning rates 1, 0.1, 0.01 and 0.001.

# %%
by_lr = lab.sweep(CFG.lr_sweep, "lr", epochs=CFG.lr_epochs)
lab.plot_fits(by_lr, "lr", note=lab.size_note(SIZE))
plt.show()
show_table(lab.results_table(by_lr, "lr"))
print(by_lr[1.0].history.stop_reason)
assert by_lr[1.0].history.diverged, "lr = 1 should diverge with plain SGD"
assert not by_lr[0.01].history.diverged

# %% [markdown]
# **Question B1.** Why do lr = 1 and lr = 0.1 diverge with plain SGD, and what does `fit()` do when
# they do?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Plain SGD moves every weight by lr × gradient. A gradient step is stable only while it is shorter than
# about 2 / (the largest curvature of the loss surface); above that, a step overshoots the minimum along
# the steepest direction and lands where the error is larger, so the gradient is larger and the next step
# overshoots further: the loss grows geometrically. For this network and data the limit lies between
# 0.01 (trains) and 0.1 (measured: diverged at epoch 35; lr = 1 at epoch 13, from a starting MSE of about
# 24). The scale of the targets (−6.1 to 12.8) enters through the gradient of the squared error, which
# grows with the error, but the cause is the step size against the curvature. `fit()` notices the
# non-finite loss, stops, sets `history.diverged` and records the reason in `history.stop_reason` instead
# of crashing; the figure's loss curve ends where the loss became inf/NaN.
# ### END SOLUTION

# %% [markdown]
# **Question B2.** After the same number of epochs, how do lr = 0.01 and lr = 0.001 compare in the
# table? Is the smaller learning rate "slower but more precise" here?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# After the same 1,000 epochs lr = 0.01 is far ahead: MSE 0.123 against 1.25 for lr = 0.001 (measured).
# The smaller steps travel a tenth of the distance, so the lr = 0.001 curve is still too flat — about
# where lr = 0.005 was after 100–1,000 epochs (3.93 and 0.122). The numbers do not show it being "more
# precise": this is full-batch gradient descent, with no gradient noise, so a stable learning rate does
# not bounce around the minimum and a smaller one only follows the same downhill path more slowly. The
# "small steps settle more precisely" argument belongs to mini-batch SGD, whose noisy gradients keep a
# large-lr run jittering around the minimum (Labs 02–04). What a smaller lr buys here is stability: lr
# 0.1 and 1 diverged, and lr 0.01 (like the default 0.005 in Exercise A) shows loss spikes where a step
# overshoots and the network recovers. So: as large as is stable, which is also why schedules start high
# and decay.
# ### END SOLUTION

# %% [markdown]
# ## What you should see: the reference run
#
# The same two sweeps (and the negative-target test below), run by
# `python -m labkit reproduce function-fitting --size laptop` and committed under
# `results/function-fitting/`: its figures and numbers are what your run at this size should look
# like. The check compares your longest run's MSE with the reference's (at smoke size there is none).

# %%
reference_size = "laptop" if SIZE == "smoke" else SIZE  # smoke size has no reference: show laptop's
show_reference("function-fitting", reference_size, figures=("epochs_sweep.png", "lr_sweep.png"))
longest = max(CFG.epochs_sweep)
check_against_reference("function-fitting", SIZE, "epochs", f"mse_{longest}", by_epochs[longest].mse,
                        tolerance=0.05, higher_is_better=False)

# %% [markdown]
# ## Over-fitting a 1-D function
#
# With 200 noise-free points and a smooth target, this MLP cannot over-fit: there is no noise to
# memorise, and the points cover the interval densely. Over-fitting appears when there are **few,
# noisy** points and a big model trained for long: the curve threads through every noisy point and
# wiggles between them. Then the training error drops *below* the noise level while the error against
# the true $f$ grows. The cure is more data, a smaller model, fewer epochs (early stopping on a
# validation set) or regularisation.

# %%
demo = lab.overfit_demo(epochs=CFG.overfit_epochs)
print(f"12 noisy points: training MSE {demo['train_mse']:.3f}, noise variance {demo['noise_variance']:.1f}, "
      f"MSE against the true f {demo['true_mse']:.3f}")

# %% [markdown]
# ## Negative targets: the course's belief, tested
#
# The course report says the student believed `exp1.py` could not fit negative values. It does not say
# why, and the course's own $f$ is below zero on half the interval. So test the belief in numbers: the
# same MLP and recipe (plain SGD, lr 0.005, the size's epochs) on $f$, on $f - 20$ (every target below
# zero) and on $-f$.

# %%
negative = lab.negative_target_test(epochs=CFG.epochs, lr=CFG.lr)
show_table(lab.negative_table(negative))
assert not any(r.history.diverged for r in negative.values())
assert (negative["f-20"].prediction < 0).all(), "the MLP should predict below zero everywhere for f − 20"

# %% [markdown]
# **Question N.** What does the table say about the belief that this network cannot fit negative
# values? Which part of the network decides whether it can output a negative number?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The belief is false for this network. With the same MLP and recipe (SGD, lr 0.005, 2,000 epochs) it fits
# f − 20, whose targets are all below zero (−26.1 … −7.2), to an MSE of 0.028 — better than f itself
# (0.047) — and −f to 0.045; every one of its predictions for f − 20 is negative (reference run). And the course's
# own f is negative on half the interval. Whether a
# network can output negative numbers is decided by its last layer: here it is linear (a weighted sum of
# the tanh units plus a bias), so its output can be any real number. A network whose output passed through
# a ReLU (or a sigmoid) could not go below zero; but the course report does not say that exp1.py had such
# a layer, so what made the student believe it cannot be told from the report.
# ### END SOLUTION

# %% [markdown]
# ## Exercise C — your turn: your own function
#
# Define a function of your own **with negative values**, e.g.
# $(x+1)^2 + \sin(x^2+1) - \log(x^2+1) - 6$, using torch operations (`torch.sin`, not `math.sin`).

# %% tags=["exercise"]
def my_function(x):
    ### BEGIN SOLUTION
    return (x + 1) ** 2 + torch.sin(x**2 + 1) - torch.log(x**2 + 1) - 6
    ### END SOLUTION


# %%
from labkit.labs.function_fitting.check import check_fit, check_my_function

check_my_function(my_function)
own = CFG.replace(epochs=CFG.own_epochs, lr=0.01, optimizer="adam")
run = runner.run(lab.LAB, own, data=lab.points(own, my_function), write_files=False, checkpoints=False)
mine = lab.fit_result(run, my_function)
lab.plot_fits({0.01: mine}, "lr", title="your function (Adam, lr 0.01)", note=lab.size_note(SIZE))
plt.show()
check_fit(mine.mse, float(mine.target.max() - mine.target.min()))

# %% [markdown]
# ## Questions
#
# **Question 1.** Double the hidden width to 128 (`hidden=(128, 128)`). Does the fit at 1,000 epochs
# improve? Why might it, and why might it not?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Hardly. Measured after 1,000 epochs of SGD at lr 0.005: MSE 0.122 with 64 units per layer and 0.121
# with 128 (at lr 0.01: 0.123 and 0.129, slightly worse). Why it might: more tanh units are more
# building blocks for the wiggles, i.e. more capacity. Why it does not here: after 1,000 epochs the limit
# is optimisation, not capacity — the 64-wide network reaches 0.0038 after 10,000 epochs and 0.00046
# after 50,000 — so extra width adds parameters (16,897 instead of 4,353) without adding much progress per
# step.
# ### END SOLUTION

# %% [markdown]
# **Question 2.** Switch to `optimizer="adam"` at lr 0.01 and compare with SGD at lr 0.01 after the
# same 1,000 epochs. Which fits better, and why?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Adam, by far: after 1,000 epochs at lr 0.01 its MSE is 0.00024 against 0.123 for plain SGD (measured),
# about 500 times lower and better than SGD at lr 0.005 reaches in 50,000 epochs (0.00046). Adam divides
# each parameter's step by a running root-mean-square of its own gradients, so every weight moves by
# roughly lr per step whatever the size of its gradient; plain SGD moves the weights whose gradients are
# small (the flat directions of a badly conditioned loss, which shape the fine wiggles) very slowly. Adam
# also averages the gradients over steps (momentum).
# ### END SOLUTION

# %% [markdown]
# **Question 3.** Train on $[-4, 4]$ and plot the prediction on $[-8, 8]$: what happens outside the
# training interval, and why?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Outside [−4, 4] the prediction flattens while f keeps growing like x². Measured for the 10,000-epoch SGD
# fit: within the interval it is within 0.3 of f, but at x = 8 it predicts 15.9 against f(8) = 61.7, and
# at x = −8 20.6 against 56.1. Nothing in the loss constrains the network where there are no training
# points, and its hidden units are tanh, which saturate at ±1 for large inputs: far from the data the
# output tends to a constant (a weighted sum of saturated units plus a bias), so a tanh MLP is bounded and
# cannot extrapolate a parabola. A network fits where it has data; it does not learn the formula.
# ### END SOLUTION
