"""`make bench`: time to first audio, Deepgram requests, CPU and memory per call, side by side."""
