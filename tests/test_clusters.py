"""Self-conditioning (ganforge.clusters): k-means on D's features, the class prior G draws from, and
runs that use them."""
import importlib
import json

import pytest
import torch

from ganforge import checkpoint, clusters
from ganforge.cli import main
from ganforge.config import resolve
from ganforge.errors import UserError
from ganforge.models.dcgan import Generator, default_labels
from ganforge.sample import draws, latents, seed_draws

TINY = ["--data", "digits", "--resolution", "16", "--no-progress", "g_width=8", "d_width=8", "batch_size=16",
        "log_every=1", "sample_every=50", "tensorboard=0", "clusters=3", "recluster_every=3", "checkpoint_every=3"]


def blobs(k: int = 4, n: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n points around each of k far-apart centres in 8-D, and which centre each is from."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, 8, generator=g) * 10
    truth = torch.arange(k).repeat_interleave(n)
    return centres[truth] + torch.randn(k * n, 8, generator=g), truth


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_finds_separated_blobs_and_keeps_the_old_cluster_ids():
    x, truth = blobs()
    found = clusters.cluster(x, 4, None, torch.Generator().manual_seed(0))
    assert same_partition(found, truth)
    old = torch.tensor([2, 0, 3, 1])[truth]  # the same clusters under other ids
    moved = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))  # D's features drift
    assert torch.equal(clusters.cluster(moved, 4, old, torch.Generator().manual_seed(2)), old)


def test_an_empty_cluster_restarts_at_the_farthest_point():
    x, truth = blobs(k=3)
    centres = torch.stack([x[0], x[0] + 1e-3, torch.full((8,), 1e3)])  # two on one point, one far from all
    ids = clusters.assign(x, clusters.kmeans(x, centres))
    assert torch.bincount(ids, minlength=3).min() > 0
    assert same_partition(ids, truth)


def test_cluster_sizes_are_shares():
    assert torch.equal(clusters.sizes(torch.tensor([0, 0, 2, 0]), 3), torch.tensor([0.75, 0.0, 0.25]))


def prior_G(prior: list[float]) -> Generator:
    G = Generator(z_dim=4, resolution=16, channels=1, width=4, num_classes=len(prior), prior=True).eval()
    G.class_prior.copy_(torch.tensor(prior))
    return G


def test_a_G_with_a_prior_gives_each_class_its_share_of_an_unlabelled_batch():
    assert default_labels(8, prior_G([0.5, 0.25, 0.25, 0.0]), "cpu").tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    plain = Generator(z_dim=4, resolution=16, channels=1, width=4, num_classes=3)
    assert default_labels(5, plain, "cpu").tolist() == [0, 1, 2, 0, 1]  # without a prior: in turn


def test_samples_draw_their_classes_from_the_prior_after_z():
    z, classes = draws(6, prior_G([0.0, 1.0, 0.0]), seed=5)
    assert torch.equal(z, latents(6, 4, 5)) and classes.tolist() == [1] * 6
    _, classes = draws(4000, prior_G([0.25] * 4), seed=0)
    shares = torch.bincount(classes, minlength=4) / 4000
    assert (shares - 0.25).abs().max() < 0.03
    assert not torch.equal(classes[:8], torch.arange(8) % 4)  # independent draws, not in turn
    G = prior_G([0.1, 0.2, 0.7])
    z, classes = seed_draws(G, [3, 9])  # one sample per seed: the same as that seed's first sample
    assert torch.equal(z[1:], draws(1, G, 9)[0]) and classes[1] == draws(1, G, 9)[1][0]


@pytest.mark.parametrize("user, message", [
    ({"clusters": 1}, "clusters must be 0 .off. or at least 2"),
    ({"clusters": 4, "conditional": True}, "clusters makes its own classes: drop conditional=1"),
    ({"clusters": 4, "pack": 2}, "clusters does not work with pack"),
    ({"clusters": 4, "arch": "mlp"}, "clusters is for images"),
])
def test_self_conditioning_settings_that_cannot_work_are_refused(user, message):
    with pytest.raises(UserError, match=message):
        resolve(user, user.get("arch", "dcgan"))


def test_more_clusters_than_images_is_one_line(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--steps", "1", *TINY, "clusters=5000"]) == 2
    assert "clusters=5000 is more than the data set's 1797 images: lower it" in capsys.readouterr().err


def test_a_self_conditioned_run_clusters_on_schedule_and_resumes_exactly(tmp_path, monkeypatch):
    args = ["train", "--out", str(tmp_path), "--steps", "7", *TINY]
    assert main([*args, "--name", "a"]) == 0
    log = map(json.loads, (tmp_path / "a" / "log.jsonl").read_text().splitlines())
    events = [e for e in log if e.get("event") == "clusters"]
    assert [e["step"] for e in events] == [0, 3, 6] and all(e["clusters"] == 3 for e in events)
    tensors, record = checkpoint.load(checkpoint.find(tmp_path / "a"))
    assert record["model"]["G"]["prior"] and record["config"]["conditional"] is False  # digits' labels unused
    ids = tensors["clusters"]
    assert ids.shape == (1797,) and set(ids.tolist()) <= {0, 1, 2}
    assert torch.equal(tensors["G_ema.class_prior"], clusters.sizes(ids, 3))

    train_module = importlib.import_module("ganforge.train")
    save = train_module._save_checkpoint

    def save_then_stop(state, *rest):  # stopped right after the step-3 checkpoint, before clustering again
        save(state, *rest)
        if state.step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_stop)
    assert main([*args, "--name", "b"]) == 130
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "b"), "--no-progress"]) == 0
    resumed, _ = checkpoint.load(checkpoint.find(tmp_path / "b"))
    assert resumed.keys() == tensors.keys()
    assert all(torch.equal(tensors[k], resumed[k]) for k in tensors)
    assert main(["sample", str(tmp_path / "a"), "--n", "8", "--out", str(tmp_path / "s.png")]) == 0
