"""The TGD research app (Gradio): see the topology, the teachers, the jobs and the noise.

Start it with ``make app`` (or ``python -m app --port 7860``). The UI only displays: every
computation is a call into ``tgd_core``.
"""
