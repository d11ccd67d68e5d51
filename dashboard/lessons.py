"""Lessons: one click sets the Train page's controls for a classic demonstration. Each sets widget
values by their keys; the text says what to look for. "shipped" names the checkpoints (checkpoints/NAME)
the Train page shows at once, as recorded runs, before anything is trained live; "sweep" names a shipped
sweep (checkpoints/sweeps/NAME) the lesson reads on the Sweeps page; "map" a shipped checkpoint whose run
the lesson plays on the Latent map page."""

LESSONS = {
    "Induce collapse: β=8": {
        "text": "The same VAE twice, one with the KL weighed eight times (β-VAE, β=8). Watch the KL heatmap: in "
                "the β=8 run a quarter of the rows go dark, meaning those dimensions fall onto the prior and carry "
                "nothing, and the rest carry less. MI roughly halves, and its reconstructions blur towards an "
                "average digit. Compare's verdict column counts the collapsed dimensions.",
        "objectives": ["vae", "beta-vae"], "knobs": {"beta-vae": {"beta": 8.0}},
        "dataset": "mnist", "latent": 16, "steps": 1500, "shipped": ["mnist-vae", "mnist-beta8"],
    },
    "Fix it with KL annealing or free bits": {
        "text": "Three runs at β=8. Plain β-VAE collapses. KL annealing starts β at 0 and raises it over the first "
                "1,000 steps, so the encoder learns to use z before the KL bites; but once β reaches 8 the "
                "dimensions close again, and it ends about where plain β=8 does. Free bits do not charge the first "
                "λ nats of KL per dimension, so every dimension stays open. Compare the heatmaps and active units.",
        "objectives": ["beta-vae", "kl-annealing", "free-bits"],
        "knobs": {"beta-vae": {"beta": 8.0}, "free-bits": {"beta": 8.0},
                  "kl-annealing": {"beta": 8.0, "schedule": "linear", "anneal_steps": 1000}},
        "dataset": "mnist", "latent": 16, "steps": 1500,
        "shipped": ["mnist-beta8", "mnist-kl-annealing-beta8", "mnist-free-bits-beta8"],
    },
    "Where does each objective collapse?": {
        "text": "The shipped sweep digits-collapse trained the β-VAE and two of its fixes at β = 1, 2, 4 and 8 and "
                "latent sizes 2, 4 and 8, two seeds each (72 runs on the digits). Open it on the **Sweeps** page: "
                "the β-VAE keeps all 8 dimensions at β=1, 6.5 of 8 at β=2 and, bar one dimension of one seed at "
                "z=2, none from β=4 on. KL annealing collapses from β=4 too: raising β slowly only delays it. Free bits keep every "
                "dimension active at every β, yet colour by MI and it falls from 2.4 to 0.7 nats at z=8: active "
                "units alone overstate what the code carries. Click a cell to open its models; press **Train** to "
                "race the three at β=4 live.",
        "objectives": ["beta-vae", "free-bits", "kl-annealing"],
        "knobs": {"beta-vae": {"beta": 4.0}, "free-bits": {"beta": 4.0},
                  "kl-annealing": {"beta": 4.0, "schedule": "linear", "anneal_steps": 150}},
        "dataset": "digits", "latent": 8, "steps": 300, "shipped": [], "sweep": "digits-collapse",
    },
    "Why μ-VAE spreads the clusters": {
        "text": "The μ-VAE replaces the KL's pull of every mean to 0 with a penalty on the batch's mean, and clips "
                "the means to a ball. After training, open the Latent map page and colour by label: the μ-VAE's "
                "classes sit further apart. Its prior samples want σ ≈ 3 (Explore, Prior samples).",
        "objectives": ["vae", "mu-vae"], "knobs": {}, "dataset": "mnist", "latent": 16, "steps": 1500,
        "shipped": ["mnist-vae", "mnist-mu-vae-1"],
    },
    "Discrete latents": {
        "text": "Bernoulli bits instead of Gaussian coordinates, trained three ways: the importance-sampling "
                "estimator, the same with a leave-one-out baseline, and the Gumbel-softmax relaxation. Compare "
                "how fast each loss falls; in Explore, flip bits and watch the digit change.",
        "objectives": ["discrete-is", "reinforce-loo", "gumbel-softmax"], "knobs": {},
        "dataset": "mnist", "latent": 16, "steps": 1500,
        "shipped": ["mnist-bernoulli", "mnist-reinforce-loo", "mnist-gumbel-softmax"],
    },
    "Watch a dimension collapse": {
        "text": "KL annealing at β=8 raises β from 0 to 8 over the first 1,000 steps, so early on the encoder uses "
                "every dimension, and then the KL takes them back one by one. Drag the **Step** slider above the "
                "run: the red line moves along the curves and the heatmap, and the pictures are the model at that "
                "step. At step 600 every one of the 16 dimensions is active. At step 1,400 active units still say 16, "
                "yet Compare's verdict (open it at that step) already calls z0, z4, z14 and z15 unused by the "
                "decoder; by step 2,000 those four and z11 have collapsed onto the prior and active units read 11. "
                "Then open the run on the Latent map and press **Play** under *Over the run*: the same test images, "
                "step by step, as the map shrinks and the classes those dimensions kept apart draw together.",
        "objectives": ["kl-annealing"], "knobs": {"kl-annealing": {"beta": 8.0, "schedule": "linear", "anneal_steps": 1000}},
        "dataset": "mnist", "latent": 16, "steps": 2000, "shipped": ["mnist-kl-annealing-beta8"],
        "map": "mnist-kl-annealing-beta8",
    },
    "IWAE tightens the bound": {
        "text": "A VAE and an IWAE with k=5 importance samples. Then open Compare: for both, IWAE NLL is below "
                "−ELBO, and the gap is the part of KL(q(z|x) ‖ p(z|x)) that k samples recover. The IWAE model's "
                "own bound is tighter, and its encoder is trained for it.",
        "objectives": ["vae", "iwae"], "knobs": {"iwae": {"k": 5}}, "dataset": "mnist", "latent": 16, "steps": 1500,
        "shipped": ["mnist-vae", "mnist-iwae"],
    },
    "A strong decoder ignores z": {
        "text": "Four VAEs with one strong decoder on the digits: a PixelCNN of 8 gated layers that predicts each pixel "
                "from the pixels before it, z entering every layer. The plain **VAE** collapses at once: for its "
                "first 300 steps the KL heatmap stays dark (0.04 to 0.05 nats in all) and no unit is active, since "
                "the decoder draws digits without z. Drag **Step** to 200 and open the model in **Explore**: each "
                "slider moves a pixel's probability by at most 0.10 to 0.25. It creeps back late (0.65 nats, 5 "
                "active units at step 1,500). **Aggressive** training (He et al. 2019) trains the encoder until it "
                "catches up before each decoder step (650 steps, 27 encoder steps each): 6 to 8 units active from step "
                "50, 1.2 nats at the end. **BN-VAE** holds the KL at its floor of 1 nat from step 50; **δ-VAE** "
                "keeps every dimension 0.25 nats from the prior (2.2 nats at step 50), yet with one active unit "
                "then: a KL floor is not information. On these two the sliders move pixels by 0.50 to 0.95. All four score "
                "within 0.4 nats (IWAE NLL 23.1 to 23.5). The shipped sweep digits-strong-decoder (**Sweeps** page) "
                "trains the same with 0 to 8 layers and six objectives: one layer is enough to collapse the plain VAE. "
                "Press **Train** to race them for 400 steps.",
        "objectives": ["vae", "aggressive", "bn-vae", "delta-vae"],
        "knobs": {"aggressive": {"mi_every": 50}, "bn-vae": {"gamma": 0.5}, "delta-vae": {"delta": 0.25}},
        "dataset": "digits", "latent": 8, "steps": 400, "pixelcnn": 8,
        "shipped": ["digits-pixelcnn-vae", "digits-pixelcnn-aggressive", "digits-pixelcnn-bn-vae",
                    "digits-pixelcnn-delta-vae"], "sweep": "digits-strong-decoder",
    },
}


def widget_values(name: str) -> dict:
    """The Train page's widget keys and values that a lesson sets."""
    lesson = LESSONS[name]
    values = {"objectives": lesson["objectives"], "dataset": lesson["dataset"], "latent": lesson["latent"],
              "steps": lesson["steps"], "pixelcnn": lesson.get("pixelcnn", 0)}
    for objective, knobs in lesson["knobs"].items():
        values |= {f"knob-{objective}-{k}": v for k, v in knobs.items()}
    return values
