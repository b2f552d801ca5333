// CIFAR ResNet (akamaster layout). The block type stays private: callers only see names.
#include "models/cifar_resnet.h"

#include <torch/torch.h>

#include "models/batch_norm.h"
#include "models/layers.h"
#include "util/error.h"

namespace hessgap::models {
namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

// akamaster's _weights_init: kaiming_normal_(weight) with its defaults (a = 0, fan_in).
void kaiming_init(nn::Module& module) {
  torch::NoGradGuard no_grad;
  visit_submodules(module, [](nn::Module& m) {
    if (auto* conv = m.as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kLeakyReLU);
    } else if (auto* linear = m.as<nn::Linear>()) {
      nn::init::kaiming_normal_(linear->weight, 0.0, torch::kFanIn, torch::kLeakyReLU);
    }
  });
}

class BasicBlockImpl : public nn::Module {
 public:
  BasicBlockImpl(std::int64_t in_planes, std::int64_t planes, std::int64_t stride)
      : conv1(register_module("conv1", conv3x3(in_planes, planes, stride))),
        bn1(register_module("bn1", nn::BatchNorm2d(planes))),
        conv2(register_module("conv2", conv3x3(planes, planes, 1))),
        bn2(register_module("bn2", nn::BatchNorm2d(planes))),
        subsample_(stride != 1 || in_planes != planes),
        pad_(planes / 4) {}

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = torch::relu(batch_norm(bn1, conv1(x)));
    out = batch_norm(bn2, conv2(out));
    return torch::relu(out + shortcut(x));
  }

 private:
  // Option A: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4)).
  torch::Tensor shortcut(const torch::Tensor& x) const {
    if (!subsample_) return x;
    using torch::indexing::Slice;
    auto sub = x.index({Slice(), Slice(), Slice(torch::indexing::None, torch::indexing::None, 2),
                        Slice(torch::indexing::None, torch::indexing::None, 2)});
    return F::pad(sub, F::PadFuncOptions({0, 0, 0, 0, pad_, pad_}));
  }

 public:
  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;

 private:
  bool subsample_;
  std::int64_t pad_;
};

}  // namespace

CifarResNet::CifarResNet(std::int64_t depth, std::int64_t num_classes)
    : depth_(depth), num_classes_(num_classes) {
  HG_CHECK(depth >= 8 && (depth - 2) % 6 == 0,
           "CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got " << depth);
  HG_CHECK(num_classes >= 1, "CIFAR ResNet needs num_classes >= 1, got " << num_classes);
  const std::int64_t n = (depth - 2) / 6;
  std::int64_t in_planes = 16;
  // Registration order fixes named_parameters() order and hence the Hessian-layer order.
  conv1_ = register_module("conv1", conv3x3(3, 16, 1));
  bn1_ = register_module("bn1", nn::BatchNorm2d(16));
  layer1_ = register_module("layer1", make_stage(in_planes, 16, n, 1));
  layer2_ = register_module("layer2", make_stage(in_planes, 32, n, 2));
  layer3_ = register_module("layer3", make_stage(in_planes, 64, n, 2));
  linear_ = register_module("linear", nn::Linear(64, num_classes));
  kaiming_init(*this);
  hessian_layers_ = conv_hessian_layers(*this, "linear.weight");
  HG_ASSERT(static_cast<std::int64_t>(hessian_layers_.size()) == 6 * n + 2,
            "CIFAR ResNet-" << depth << " Hessian layer count");
}

nn::ModuleList CifarResNet::make_stage(std::int64_t& in_planes, std::int64_t planes,
                                       std::int64_t blocks, std::int64_t stride) {
  nn::ModuleList stage;
  for (std::int64_t b = 0; b < blocks; ++b) {
    stage->push_back(std::make_shared<BasicBlockImpl>(in_planes, planes, b == 0 ? stride : 1));
    in_planes = planes;
  }
  return stage;
}

torch::Tensor CifarResNet::forward(const data::Batch& batch) {
  HG_CHECK(batch.inputs.defined(), arch() << ": batch.inputs is undefined");
  return forward_images(batch.inputs);
}

torch::Tensor CifarResNet::forward_images(const torch::Tensor& images) {
  HG_CHECK(images.dim() == 4 && images.size(1) == 3 && images.size(2) == images.size(3) &&
               images.is_floating_point(),
           arch() << ": expected floating images [B,3,H,H], got " << images.sizes() << " "
                  << images.scalar_type());
  auto out = torch::relu(batch_norm(bn1_, conv1_(inputs_as(images, dtype()))));
  for (auto* stage : {&layer1_, &layer2_, &layer3_}) {
    for (auto& block : **stage) out = block->as<BasicBlockImpl>()->forward(out);
  }
  // akamaster pools with F.avg_pool2d(out, out.size()[3]), i.e. globally for square inputs.
  out = F::avg_pool2d(out, F::AvgPool2dFuncOptions(out.size(3)));
  return linear_(out.flatten(1));
}

std::string CifarResNet::arch() const { return "cifar-resnet" + std::to_string(depth_); }

}  // namespace hessgap::models
