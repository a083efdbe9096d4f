"""From the winning row to a model a team can ship: each model's chosen checkpoint exported as a
Hugging Face model folder (weights, tokenizer, config with its labels) with a model card, checked to
reproduce the recorded test predictions, timed on the exporting machine's CPU, and recorded in the
`exports` table (the report's deployment figures)."""
