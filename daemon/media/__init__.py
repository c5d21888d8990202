"""Audio and video values, codecs (Opus, µ-law, PCM), resampling and WAV files: the bottom layer."""
