"""What a PixelCNN decoder costs here: a training step, a teacher-forced pass (the per-pixel probabilities of
one image), and pictures drawn pixel by pixel, by the window sampler (core.pixelcnn: each pixel reruns the
layers on the pixels it can see) beside a whole-image pass per pixel, measured side by side.

    python bench/pixelcnn.py [--threads 2] [--repeats 5]

The whole-image sampler's 784 passes cost the same each, so it is timed over the first 56 pixels and scaled
to 784 (said so in its column); the window sampler is timed over whole pictures.
"""
import argparse
import statistics
import time

import torch

from core.models import VAE, ModelConfig
from core.objectives import build

SIZES = {  # name: (layers, channels, kernels)
    "1 layer": (1, 32, ()),
    "2 layers": (2, 32, ()),
    "4 layers": (4, 32, ()),
    "5 layers": (5, 32, ()),
    "8 layers": (8, 32, ()),
    "12 layers (He et al.'s Omniglot config)": (12, 32, (9, 9, 9, 7, 7, 7, 5, 5, 5, 3, 3, 3)),
}


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def whole_image_sampler(p, noise, pixels):
    """The first `pixels` pixels drawn with a full pass over the image for each."""
    x = torch.zeros_like(noise)
    width = noise.shape[-1]
    for i in range(pixels):
        row, col = divmod(i, width)
        prob = p.probs(x)[..., 0, row, col]
        x[..., 0, row, col] = (noise[..., 0, row, col] < prob).float()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="training steps and passes timed (median)")
    parser.add_argument("--pictures", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (torch.rand(50, 1, 28, 28) < 0.2).float()
    print(f"{args.threads} threads; training step at batch 50, z = 32, the lab's MLP encoder (512, 256); "
          f"{args.pictures} pictures drawn")
    print("| decoder | reach (pixels) | training step | one teacher-forced pass (1 image) | "
          f"1 picture, window sampler | {args.pictures} pictures, window sampler | {args.pictures} pictures, whole-image "
          "passes | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (layers, channels, kernels) in SIZES.items():
        model = VAE(ModelConfig(latent_dim=32, likelihood="bernoulli", pixelcnn_layers=layers,
                                pixelcnn_channels=channels, pixelcnn_kernels=kernels))
        objective = build("vae", model=model)
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step():
            opt.zero_grad()
            objective(model, x).loss.backward()
            opt.step()

        step()  # warm
        train = timed(step, args.repeats)
        model.eval()
        with torch.no_grad():
            z = torch.randn(args.pictures, 32)
            p = model.decode(z)
            one = model.decode(z[:1])
            forced = timed(lambda: one.probs(x[:1]), args.repeats)
            noise = torch.rand(args.pictures, 1, 28, 28)
            single = timed(lambda: one.sample(noise=noise[:1]), 1)
            window = timed(lambda: p.sample(noise=noise), 1)
            first = 56
            whole = timed(lambda: whole_image_sampler(p, noise, first), 1) * 784 / first
        print(f"| {name} | {model.pixelcnn.reach} | {train:.3f} s | {forced * 1000:.1f} ms | {single:.2f} s | {window:.1f} s | "
              f"{whole:.1f} s (from 56 pixels) | {whole / window:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
