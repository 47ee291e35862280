"""CAAT (Zhou, Yang & Wu 2023): class-wise adversaries and anti-adversaries chosen by a meta-learned rule."""
