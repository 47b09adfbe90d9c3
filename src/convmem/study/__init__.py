"""The study: the recipe above `train/` and `eval/`.

One run config -> corpus -> folds -> per fold: tokenizer fitted on the training sessions only ->
emotion SLM, classifier and MAL adapter trained (`training`) -> every listed method streamed over
the held-out dialogues (`evaluation`, sharded across processes by `sharding`) -> predictions ->
results.json, report.md, plots (`report`, which hands the scoring to `convmem.eval`).

    experiment   run_experiment: the whole study, resumable, with progress stages
    methods      the methods a study evaluates (memories, DPM variants, `majority`, `<m>@vad`)
    folds        the corpus a config names, its folds, torch threads
    coding       audio -> per-utterance codes (+ prosody marks, frames) -> model inputs
    training     one fold's model directory: tokenizer, SLM, classifier, MAL adapter, card
    evaluation   one fold's predictions per method (memories, majority, VAD segmentation)
    sharding     rank-strided evaluation shards and their merge
    report       fold predictions -> the scored outputs; headline text; code commit
    run_folder   a run folder belongs to one study (resume guard)
    model_eval   a model directory scored on any manifest (`convmem eval-model`)
    final_model  the same recipe on every session (no held-out fold)

Nothing here is imported by `convmem` at start-up: heavy imports stay inside functions.
"""
