"""ResNet backbones: shapes, feature dimension, head switch, torchvision key names."""
import torch

from uslbench.nets.resnet import resnet18_cifar, resnet50


def test_resnet18_cifar_features_and_logits():
    torch.manual_seed(0)
    backbone = resnet18_cifar().eval()
    assert backbone.feature_dim == 512
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert backbone(x).shape == (2, 512)
        classifier = resnet18_cifar(num_classes=10).eval()
        assert classifier(x).shape == (2, 10)
        assert classifier.forward_features(x).shape == (2, 512)
    # CIFAR stem: 3x3 stride-1 first conv and no max-pool, torchvision key names
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    keys = set(backbone.state_dict())
    assert "layer4.1.bn2.running_var" in keys and not any(k.startswith("fc.") for k in keys)
    assert "fc.weight" in classifier.state_dict()


def test_resnet50_feature_dim_and_grey_input():
    model = resnet50(num_classes=0, in_channels=1).eval()
    assert model.feature_dim == 2048
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 2048)
