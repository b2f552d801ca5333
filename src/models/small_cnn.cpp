// Tiny CNN test model.
#include "models/small_cnn.h"

#include <torch/torch.h>

#include "models/batch_norm.h"
#include "util/error.h"

namespace hessgap::models {

namespace nn = torch::nn;

SmallCnn::SmallCnn(const SmallCnnOptions& options, std::int64_t num_classes)
    : options_(options), num_classes_(num_classes) {
  HG_CHECK(options.in_channels >= 1 && options.channels1 >= 1 && options.channels2 >= 1,
           "small-cnn: channel counts must be >= 1, got in=" << options.in_channels << " c1="
                                                             << options.channels1 << " c2="
                                                             << options.channels2);
  HG_CHECK(num_classes >= 1, "small-cnn: num_classes must be >= 1, got " << num_classes);
  auto conv = [](std::int64_t in, std::int64_t out) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false));
  };
  conv1_ = register_module("conv1", conv(options.in_channels, options.channels1));
  bn1_ = register_module("bn1", nn::BatchNorm2d(options.channels1));
  conv2_ = register_module("conv2", conv(options.channels1, options.channels2));
  bn2_ = register_module("bn2", nn::BatchNorm2d(options.channels2));
  fc_ = register_module("fc", nn::Linear(options.channels2, num_classes));
  torch::NoGradGuard no_grad;
  nn::init::kaiming_normal_(conv1_->weight, 0.0, torch::kFanIn, torch::kLeakyReLU);
  nn::init::kaiming_normal_(conv2_->weight, 0.0, torch::kFanIn, torch::kLeakyReLU);
  hessian_layers_ = conv_hessian_layers(*this, "fc.weight");
}

torch::Tensor SmallCnn::forward(const data::Batch& batch) {
  HG_CHECK(batch.inputs.defined(), arch() << ": batch.inputs is undefined");
  return forward_images(batch.inputs);
}

torch::Tensor SmallCnn::forward_images(const torch::Tensor& images) {
  HG_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels &&
               images.is_floating_point(),
           arch() << ": expected floating images [B," << options_.in_channels << ",H,W], got "
                  << images.sizes() << " " << images.scalar_type());
  auto x = torch::relu(batch_norm(bn1_, conv1_(inputs_as(images, dtype()))));
  x = torch::relu(batch_norm(bn2_, conv2_(x)));
  return fc_(x.mean({2, 3}));
}

std::string SmallCnn::arch() const {
  return "small-cnn:in=" + std::to_string(options_.in_channels) +
         ",c1=" + std::to_string(options_.channels1) + ",c2=" + std::to_string(options_.channels2);
}

}  // namespace hessgap::models
