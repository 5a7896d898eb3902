"""The real-content benchmark's pieces (``benchmarks/bench_real.py`` is the script):

    fields   the real in-focus fields and masks of ``benchmarks/data/real`` (manifest, sha256 checked)
    degrade  through-focus stacks made from them with PSF models blurlatent's synth does not use
    methods  the classical fits (train split), the classical deblurrings, the models, CARE's predictions
    scores   calibrated PSNR/SSIM, a fixed classical nucleus segmentation and its F1, intensity fidelity
    report   bench_real.json, bench_real.md and the plots
"""
