"""Loihi: students in the chip's integers, netx files run in Lava, the SLAYER baseline, NIR export."""
