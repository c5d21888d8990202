"""Audio and video values, codecs (Opus, µ-law, PCM), resampling, levels and WAV files: the
bottom layer. numpy and soxr are imported only where a conversion needs them."""
