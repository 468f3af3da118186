"""pythae 0.1.2's VAE, IWAE, MIWAE, CIWAE, PIWAE and get_nll on an iwae-np oracle fixture.

Written from docs/oracle.md alone (it imports nothing from iwae_np). The fixture's one-layer model goes
into a custom encoder and decoder (pythae's BaseEncoder / BaseDecoder), and the gradients come out of the
training machinery pythae itself uses for each model: the trainer that `pythae.pipelines.TrainingPipeline`
picks (BaseTrainer; CoupledOptimizerTrainer for PIWAE, an encoder and a decoder optimizer), called as its
`train_step` calls it (`model(inputs)`, then `trainer._optimizers_step(model_output)`), with each
optimizer's `step` replaced by a recorder of the parameters' `.grad` at that moment (the gradient the
optimizer would apply) that changes nothing.

pythae's conventions, converted to the oracle's:

    encoder output `log_covariance` is a log variance    ->  log_covariance = 2 log_sigma
    decoder output `reconstruction` is a probability      ->  reconstruction = sigmoid(logits)
    samples laid out (B, k, d), MIWAE/PIWAE (B, M, K, d)  ->  h.h1[i, b] with i = m K + j
    loss = minus a surrogate of the batch mean           ->  bound_mean.<name> = -loss (the oracle recognises
                                                              the surrogate's value as a convention)
    param.grad of that loss                               ->  grad.<name>.<p> = -param.grad
    get_nll(x, n_samples) returns mean_b log p(x_b) (an estimate of the log-likelihood, not its negative)

pythae draws its noise inside (`_sample_gauss`: `eps = torch.randn_like(std)`). The latents come out by
wrapping the model's sampler (`model._sample_gauss`) so that it records what it returns: the technique
for any library that samples inside. `log_w` comes from pythae's own `loss_function` evaluated on one
(example, sample) at a time, where its normalized weight is 1 and its loss is -log w.

    python examples/pythae_client.py FIXTURE replay OUT.npz --model iwae      # iwae, miwae, ciwae, piwae
    python examples/pythae_client.py FIXTURE statistical OUT.npz --model vae --draws N   # also iwae, ..., nll
    iwae-np oracle replay FIXTURE OUT.npz ; iwae-np oracle statistical FIXTURE OUT.npz

`--pipeline-default` trains PIWAE as `TrainingPipeline(model)` does without a training config (one
optimizer on the sum of both losses); `--nll-batch-size` is get_nll's `batch_size` (pythae's default 100).
"""
import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from pythae.data.datasets import BaseDataset, DatasetOutput
from pythae.models import CIWAE, IWAE, MIWAE, PIWAE, VAE, CIWAEConfig, IWAEConfig, MIWAEConfig, PIWAEConfig, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainer, BaseTrainerConfig, CoupledOptimizerTrainer, CoupledOptimizerTrainerConfig


def read_fixture(path):
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format") != "iwae-np-oracle" or manifest.get("format_version") != 1:
        raise SystemExit(f"{path}: not an iwae-np-oracle version 1 fixture")
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return manifest, arrays


class Network(torch.nn.Module):
    """One network of the fixture: tanh hidden layers, then linear heads; y = a @ W + b, W (n_in, n_out)."""

    def __init__(self, manifest, arrays, net):
        super().__init__()
        self.net = net
        self.layers = next(n["layers"] for n in manifest["architecture"]["networks"] if n["name"] == net)
        self.params = torch.nn.ParameterDict({
            f"{layer['name']}__{a}": torch.nn.Parameter(torch.tensor(arrays[f"param.{net}.{layer['name']}.{a}"]))
            for layer in self.layers for a in ("W", "b")})

    def forward(self, a):
        out = {}
        for layer in self.layers:
            y = a @ self.params[f"{layer['name']}__W"] + self.params[f"{layer['name']}__b"]
            if layer["activation"] == "tanh":
                a = torch.tanh(y)
            else:
                out[layer["name"]] = y
        return out


class Encoder(BaseEncoder):
    def __init__(self, manifest, arrays):
        BaseEncoder.__init__(self)
        self.q = Network(manifest, arrays, "q_h1")

    def forward(self, x):
        out = self.q(x)
        return ModelOutput(embedding=out["mu"], log_covariance=2 * out["log_sigma"])  # a log variance


class Decoder(BaseDecoder):
    def __init__(self, manifest, arrays):
        BaseDecoder.__init__(self)
        self.p = Network(manifest, arrays, "p_x")

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.p(z)["logits"]))  # a probability


OBJECTIVE = {"vae": "vae", "iwae": "iwae", "miwae": "miwae", "ciwae": "ciwae", "piwae": "piwae", "nll": "iwae"}


def build_model(name, manifest, arrays):
    k, s = manifest["k"], manifest["settings"]
    common = dict(input_dim=(manifest["architecture"]["x_dim"],), latent_dim=manifest["architecture"]["latent_dims"][0],
                  reconstruction_loss="bce")
    if name in ("vae", "nll"):
        config, cls = VAEConfig(**common), VAE
    elif name == "iwae":
        config, cls = IWAEConfig(**common, number_samples=k), IWAE
    elif name == "ciwae":
        config, cls = CIWAEConfig(**common, number_samples=k, beta=s["ciwae_beta"]), CIWAE
    else:  # M estimates of K samples each: the fixture's M, K = k / M
        M = s["miwae_M"] if name == "miwae" else s["piwae_M"]
        config_cls, cls = (MIWAEConfig, MIWAE) if name == "miwae" else (PIWAEConfig, PIWAE)
        config = config_cls(**common, number_gradient_estimates=M, number_samples=k // M)
    return cls(config, encoder=Encoder(manifest, arrays), decoder=Decoder(manifest, arrays))


def build_trainer(model, x, pipeline_default=False):
    """The trainer TrainingPipeline picks for ``model`` (pipelines/training.py), with its optimizers set."""
    if model.model_name == "PIWAE" and not pipeline_default:
        config = CoupledOptimizerTrainerConfig(output_dir=None)  # the pipeline requires this for PIWAE
    else:
        config = None  # what TrainingPipeline(model) uses: BaseTrainerConfig (for PIWAE too)
    pipeline = TrainingPipeline(model, training_config=config)
    dataset = BaseDataset(x, torch.zeros(len(x)))
    dataset.data = x  # BaseDataset casts to float32 (torch.float); the 0/1 images are exact in either
    if isinstance(pipeline.training_config, CoupledOptimizerTrainerConfig):
        trainer = CoupledOptimizerTrainer(model, dataset, training_config=pipeline.training_config)
        trainer.set_encoder_optimizer()
        trainer.set_decoder_optimizer()
        optimizers = [trainer.encoder_optimizer, trainer.decoder_optimizer]
    else:
        assert type(pipeline.training_config) is BaseTrainerConfig
        trainer = BaseTrainer(model, dataset, training_config=pipeline.training_config)
        trainer.set_optimizer()
        optimizers = [trainer.optimizer]
    return trainer, optimizers


def record_steps(optimizers):
    """Replace each optimizer's step by a recorder of its parameters' gradients; returns the record."""
    seen = {}

    def recorder(opt):
        def step(*args, **kwargs):
            for group in opt.param_groups:
                for p in group["params"]:
                    seen[id(p)] = None if p.grad is None else p.grad.detach().clone()
        return step

    for opt in optimizers:
        opt.step = recorder(opt)
    return seen


def record_samples(model):
    """Wrap the model's sampler (pythae draws eps = torch.randn_like(std) inside it): record its latents."""
    seen = {}
    real = model._sample_gauss

    def sampler(mu, std):
        z, eps = real(mu, std)
        seen["z"] = z.detach().clone()
        return z, eps

    model._sample_gauss = sampler
    return seen


def record_loss_inputs(model):
    """Wrap loss_function to keep its inputs (recon_x, x, mu, log_var, z), for log_w below."""
    seen = {}
    real = model.loss_function

    def loss_function(*args):
        seen["args"] = [a.detach() for a in args]
        return real(*args)

    model.loss_function = loss_function
    return seen, real


@contextmanager
def one_sample(model):
    saved = model.n_samples, getattr(model, "gradient_n_estimates", None)
    model.n_samples = 1
    if saved[1] is not None:
        model.gradient_n_estimates = 1
    try:
        yield
    finally:
        model.n_samples = saved[0]
        if saved[1] is not None:
            model.gradient_n_estimates = saved[1]


def log_w_from_pythae(model, real_loss, args):
    """log w (k, B) from pythae's own loss_function on one (example, sample) at a time: its loss is -log w."""
    recon, x, mu, log_var, z = args
    B = x.shape[0]
    lead = recon.shape[1:-1]  # (k,) or (M, K)
    out = np.zeros((int(np.prod(lead)), B))
    with one_sample(model), torch.no_grad():
        for b in range(B):
            for i, idx in enumerate(np.ndindex(*lead)):
                sl = (slice(b, b + 1),) + tuple(slice(j, j + 1) for j in idx)
                loss = real_loss(recon[sl], x[b:b + 1], mu[sl], log_var[sl], z[sl])[0]
                out[i, b] = -float(loss)
    return out


def gradient_keys(model, objective):
    out = {}
    for net in (model.encoder.q, model.decoder.p):
        for name, p in net.params.items():
            out[id(p)] = (f"grad.{objective}.{net.net}.{name.replace('__', '.')}", p)
    return out


def one_step(model, trainer, x, record, objective):
    """One train_step's forward and _optimizers_step: (-loss, {grad key: ascent direction of the batch mean})."""
    for p in model.parameters():
        p.grad = None
    record.clear()
    output = model(DatasetOutput(data=x), epoch=1, dataset_size=len(x), uses_ddp=False)
    trainer._optimizers_step(output)
    grads = {key: -record[i].numpy() for i, (key, p) in gradient_keys(model, objective).items()}
    return -float(output.loss.detach()), grads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture")
    parser.add_argument("mode", choices=["replay", "statistical"])
    parser.add_argument("out", help="results .npz to write")
    parser.add_argument("--model", choices=list(OBJECTIVE), default="iwae")
    parser.add_argument("--draws", type=int, default=1000, help="statistical mode: independent draws (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed")
    parser.add_argument("--pipeline-default", action="store_true",
                        help="PIWAE: the trainer TrainingPipeline(model) picks with no training config")
    parser.add_argument("--nll-batch-size", type=int, default=100, help="get_nll's batch_size (pythae's default 100)")
    args = parser.parse_args(argv)
    saved = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        run(args)
    finally:
        torch.set_default_dtype(saved[0])
        torch.set_num_threads(saved[1])
    return 0


def run(args):
    manifest, arrays = read_fixture(args.fixture)
    if manifest["architecture"]["n_stochastic_layers"] != 1 or manifest["dtype"] != "float64":
        raise SystemExit("pythae's models have one stochastic layer: use a float64 one-layer fixture")
    torch.manual_seed(args.seed)
    x = torch.tensor(arrays["x"])
    B, k, objective = x.shape[0], manifest["k"], OBJECTIVE[args.model]
    model = build_model(args.model, manifest, arrays)
    if args.model == "nll":
        if args.mode != "statistical":
            raise SystemExit("get_nll returns one number per call: use statistical mode")
        with torch.no_grad():
            values = [model.get_nll(x, n_samples=k, batch_size=args.nll_batch_size) for _ in range(args.draws)]
        np.savez(args.out, **{"bound_mean.iwae": np.array(values)})
        print(f"wrote {args.out}: get_nll, k = {k}, batch = {B}")
        return
    trainer, optimizers = build_trainer(model, x, args.pipeline_default)
    record = record_steps(optimizers)
    samples = record_samples(model)
    inputs, real_loss = record_loss_inputs(model)
    bound_key = None if args.model == "piwae" else f"bound_mean.{objective}"  # PIWAE: two losses, no bound
    if args.mode == "replay":
        if args.model == "vae":
            raise SystemExit("pythae's VAE uses an analytic KL: its value and gradient on given latents are not "
                             "the sampled VAE bound's; use statistical mode")
        value, grads = one_step(model, trainer, x, record, objective)
        z = samples["z"]
        results = {"h.h1": z.reshape(B, -1, z.shape[-1]).transpose(0, 1).numpy(),  # (k, B, d), i = m K + j
                   "log_w": log_w_from_pythae(model, real_loss, inputs["args"]), **grads}
        if bound_key:
            results[bound_key] = np.array(value)
    else:
        draws = [one_step(model, trainer, x, record, objective) for _ in range(args.draws)]
        results = {key: np.stack([g[key] for _, g in draws]) for key in draws[0][1]}
        if bound_key:
            results[bound_key] = np.array([v for v, _ in draws])
    np.savez(args.out, **results)
    print(f"wrote {args.out}: {args.mode}, pythae {model.model_name}, k = {k}, batch = {B}")


if __name__ == "__main__":
    sys.exit(main())
