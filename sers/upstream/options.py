"""The names of `sers extract`'s model options, in a module that imports nothing, so that
``sers extract --help`` lists them without loading torch or transformers."""

DTYPES = ("float32", "float16", "bfloat16")  # float16/bfloat16 run the float32 weights under autocast
WHISPER_INPUTS = ("padded", "trimmed")       # Whisper windows: padded to 30 s, or the audio's frames only
