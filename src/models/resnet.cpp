// torchvision ResNets. The block types stay private: callers only see names.
#include "models/resnet.h"

#include <torch/torch.h>

#include "models/batch_norm.h"
#include "models/layers.h"
#include "util/error.h"

namespace hessgap::models {
namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

// torchvision's ResNet.__init__ init loop.
void torchvision_init(nn::Module& module) {
  torch::NoGradGuard no_grad;
  visit_submodules(module, [](nn::Module& m) {
    if (auto* conv = m.as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = m.as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    }
  });
}

// The residual branch differs between the two block kinds; the stage loop only needs forward.
class BlockImpl : public nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;

 protected:
  // torchvision registers `downsample` after the branch's convs and BNs (it is assigned last in
  // the block's __init__), which fixes its place in the state dict.
  void add_downsample(std::int64_t in, std::int64_t out, std::int64_t stride) {
    if (stride == 1 && in == out) return;
    downsample_ = register_module(
        "downsample", nn::Sequential(conv1x1(in, out, stride), nn::BatchNorm2d(out)));
  }
  torch::Tensor identity(const torch::Tensor& x) {
    if (downsample_.is_empty()) return x;
    return batch_norm(downsample_[1]->as<nn::BatchNorm2d>(), downsample_[0]->as<nn::Conv2d>()->forward(x));
  }

 private:
  nn::Sequential downsample_{nullptr};
};

class BasicBlockImpl : public BlockImpl {
 public:
  static constexpr std::int64_t kExpansion = 1;

  BasicBlockImpl(std::int64_t in_planes, std::int64_t planes, std::int64_t stride)
      : conv1(register_module("conv1", conv3x3(in_planes, planes, stride))),
        bn1(register_module("bn1", nn::BatchNorm2d(planes))),
        conv2(register_module("conv2", conv3x3(planes, planes, 1))),
        bn2(register_module("bn2", nn::BatchNorm2d(planes))) {
    add_downsample(in_planes, planes * kExpansion, stride);
  }

  // In place where torchvision is (ReLU(inplace=True), out += identity): BatchNorm's backward keeps its
  // input, not its output, so nothing autograd saved is overwritten (autograd's version counters would
  // throw if it were), and fewer activations stay alive.
  torch::Tensor forward(const torch::Tensor& x) override {
    auto out = batch_norm(bn1, conv1(x)).relu_();
    out = batch_norm(bn2, conv2(out));
    out += identity(x);
    return out.relu_();
  }

  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;
};

// ResNet V1.5: the stride sits on the 3x3 conv2.
class BottleneckImpl : public BlockImpl {
 public:
  static constexpr std::int64_t kExpansion = 4;

  BottleneckImpl(std::int64_t in_planes, std::int64_t planes, std::int64_t stride)
      : conv1(register_module("conv1", conv1x1(in_planes, planes, 1))),
        bn1(register_module("bn1", nn::BatchNorm2d(planes))),
        conv2(register_module("conv2", conv3x3(planes, planes, stride))),
        bn2(register_module("bn2", nn::BatchNorm2d(planes))),
        conv3(register_module("conv3", conv1x1(planes, planes * kExpansion, 1))),
        bn3(register_module("bn3", nn::BatchNorm2d(planes * kExpansion))) {
    add_downsample(in_planes, planes * kExpansion, stride);
  }

  torch::Tensor forward(const torch::Tensor& x) override {  // in place as BasicBlock
    auto out = batch_norm(bn1, conv1(x)).relu_();
    out = batch_norm(bn2, conv2(out)).relu_();
    out = batch_norm(bn3, conv3(out));
    out += identity(x);
    return out.relu_();
  }

  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;
  nn::Conv2d conv3;
  nn::BatchNorm2d bn3;
};

struct Layout {
  bool bottleneck;
  std::int64_t blocks[4];
};

Layout layout_of(std::int64_t depth) {
  switch (depth) {
    case 18: return {false, {2, 2, 2, 2}};
    case 34: return {false, {3, 4, 6, 3}};
    case 50: return {true, {3, 4, 6, 3}};
    case 101: return {true, {3, 4, 23, 3}};
    default: HG_FAIL("ResNet depth must be 18, 34, 50 or 101, got " << depth);
  }
}

}  // namespace

ResNet::ResNet(std::int64_t depth, std::int64_t num_classes)
    : depth_(depth), num_classes_(num_classes), bottleneck_(layout_of(depth).bottleneck) {
  HG_CHECK(num_classes >= 1, "ResNet needs num_classes >= 1, got " << num_classes);
  const Layout layout = layout_of(depth);
  const std::int64_t expansion =
      bottleneck_ ? BottleneckImpl::kExpansion : BasicBlockImpl::kExpansion;
  // Registration order fixes named_parameters() order and hence the Hessian-layer order.
  conv1_ = register_module(
      "conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
  bn1_ = register_module("bn1", nn::BatchNorm2d(64));
  layer1_ = register_module("layer1", make_stage(64, layout.blocks[0], 1));
  layer2_ = register_module("layer2", make_stage(128, layout.blocks[1], 2));
  layer3_ = register_module("layer3", make_stage(256, layout.blocks[2], 2));
  layer4_ = register_module("layer4", make_stage(512, layout.blocks[3], 2));
  fc_ = register_module("fc", nn::Linear(512 * expansion, num_classes));
  torchvision_init(*this);
  hessian_layers_ = conv_hessian_layers(*this, "fc.weight");
  HG_ASSERT(static_cast<std::int64_t>(hessian_layers_.size()) == depth,
            "ResNet-" << depth << " Hessian layer count " << hessian_layers_.size());
}

nn::ModuleList ResNet::make_stage(std::int64_t planes, std::int64_t blocks, std::int64_t stride) {
  nn::ModuleList stage;
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t s = b == 0 ? stride : 1;
    if (bottleneck_) {
      stage->push_back(std::make_shared<BottleneckImpl>(in_planes_, planes, s));
      in_planes_ = planes * BottleneckImpl::kExpansion;
    } else {
      stage->push_back(std::make_shared<BasicBlockImpl>(in_planes_, planes, s));
      in_planes_ = planes * BasicBlockImpl::kExpansion;
    }
  }
  return stage;
}

torch::Tensor ResNet::forward(const data::Batch& batch) {
  HG_CHECK(batch.inputs.defined(), arch() << ": batch.inputs is undefined");
  return forward_images(batch.inputs);
}

torch::Tensor ResNet::forward_images(const torch::Tensor& images) {
  HG_CHECK(images.dim() == 4 && images.size(1) == 3 && images.is_floating_point(),
           arch() << ": expected floating images [B,3,H,W], got " << images.sizes() << " "
                  << images.scalar_type());
  auto x = batch_norm(bn1_, conv1_(inputs_as(images, dtype()))).relu_();
  x = F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
  for (auto* stage : {&layer1_, &layer2_, &layer3_, &layer4_}) {
    for (auto& block : **stage) x = block->as<BlockImpl>()->forward(x);
  }
  x = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions({1, 1}));
  return fc_(x.flatten(1));
}

std::string ResNet::arch() const { return "resnet" + std::to_string(depth_); }

}  // namespace hessgap::models
