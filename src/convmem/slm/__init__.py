"""The emotion speech LLM: vocabulary expansion (vocab), dialogue token streams (stream),
training windows of the paper's objective and dense chunks (windows), losses (loss) and
model building/saving/loading (model). Import submodules directly; `model` pulls in
transformers/peft lazily."""
