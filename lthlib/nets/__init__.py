"""The networks: the paper's (Figure 2 of arXiv:1803.03635), torchvision's ResNet-18 and VGG-19
for 28x28 inputs, and sparse layers for inference.
"""
