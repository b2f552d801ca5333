// Opening a dataset from a small description (config file / CLI flags) without naming its class.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "data/dataset.h"
#include "data/label_noise.h"

namespace hessgap::data {

struct DatasetSpec {
  // "imagefolder": `path` is the ImageFolder root itself (root/<class>/<image>; pick the split by
  //                choosing the folder, e.g. .../cifar10-jpeg/test); `split` is not used.
  // "idx":         `path` is a folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
  //                (as /usr/share/datasets/fashion-mnist) and `split` picks "train" or "test"
  //                (t10k); or `path` is an images file whose labels file has the same name with
  //                "images-idx3" replaced by "labels-idx1".
  // "cifar10":     `path` is a folder holding cifar-10-batches-bin/ (or that folder itself), the
  //                official binary version; `split` picks "train" (data_batch_1..5) or "test".
  // "cifar100":    likewise with cifar-100-binary/{train,test}.bin; fine labels (100 classes).
  // "caltech256":  `path` is the Caltech-256 root (root/NNN.name/<image>, 257.clutter excluded);
  //                `split` picks "train", "val" or "test" (files 0-29, 30-49, 50-69 of each class
  //                sorted by name; see caltech.h). max_per_class applies within the split.
  // "domainnet":   `path` is the DomainNet root in the layout of domainnet.h (sample_classes_{s}.txt,
  //                sample_{s}/...); `split` picks the partition "train", "val" or "test"; `domain`,
  //                `sample` and `label_source` ("" = weak for train, true otherwise) as DomainNetOptions.
  //                normalize "domain" (the reference) uses the domain's train statistics; crop must be
  //                0. The reference transform is resize 224, normalize "domain".
  // "mit-indoor":  `path` is the MIT-Indoor-67 root (Images/<class>/<file>, TrainImages.txt,
  //                TestImages.txt); `split` picks "train", "val" or "test"; `valid_split` and
  //                `split_seed` choose the validation part of TrainImages.txt (see mit_indoor.h).
  // "aircraft", "cub200", "stanford-cars", "stanford-dogs", "flowers102", "awa2": `path` is the dataset's
  //                root in its official archive layout (FGVC-Aircraft, CUB-200-2011, Stanford Cars, Stanford
  //                Dogs, Oxford Flowers-102, Animals with Attributes 2; image_benchmarks.h). `split` picks
  //                "train", "val" or "test" (aircraft also "trainval"). aircraft and flowers102 have official
  //                val lists; for cub200, stanford-cars and stanford-dogs "train" is the whole official train
  //                list and "val" the part of it that `valid_split` and `split_seed` hold out (the trainer's
  //                hold-out); awa2 splits one pool: a fixed 20 % test part, the rest as those three.
  // These take resize, crop and a 3-channel (or "none") normalize as "imagefolder" does.
  // "glue":        `path` is a GLUE task folder holding {train,dev,test}.tsv (split "train", "dev" — also
  //                "val" — or "test"), or one TSV file (split not used); `task` "mrpc" or "sst2" (""
  //                = from the folder name MRPC / SST-2); `tokenizer` a folder with vocab.json + merges.txt
  //                (RoBERTa) or vocab.txt (BERT); `max_length` tokens per example, padded to it. Image
  //                fields (resize, crop, max_per_class) must keep their defaults; normalize is ignored.
  std::string kind = "imagefolder";
  std::string path;
  std::string split = "test";
  int resize = 0;  // RGB kinds: shorter side (torchvision Resize); 0 = none. idx: must be 0
  int crop = 0;    // RGB kinds: square center crop; 0 = none. idx: must be 0
  // Per-channel statistics: "imagenet" (0.485,0.456,0.406)/(0.229,0.224,0.225) and "cifar10"
  // (0.4914,0.4822,0.4465)/(0.2470,0.2435,0.2616) for 3-channel images; "fashion-mnist"
  // 0.2860/0.3530 and "mnist" 0.1307/0.3081 for 1-channel IDX images; "none" (mean 0, std 1)
  // for either; "domain" (kind "domainnet" only): the domain's train statistics. A 3-channel name
  // with kind "idx" (or the reverse) is an error; with grey_to_rgb, idx takes the 3-channel names
  // and refuses the 1-channel ones.
  std::string normalize = "imagenet";
  // "idx" only (other kinds refuse a non-default value): zero padding of `pad` pixels on every side
  // (28 -> 32 px for 2), applied to the raw pixels before normalisation as torchvision's Pad(fill=0)
  // before ToTensor/Normalize; and the grey channel replicated to 3 channels (IdxOptions).
  int pad = 0;
  bool grey_to_rgb = false;
  std::int64_t max_per_class = 0;  // first N samples of each class; 0 = all
  // Any kind: keep only the first `limit` samples of the split, in its natural order (after
  // max_per_class, and for mit-indoor after the validation split), ids unchanged (SubsetDataset).
  // Label noise then goes on those samples only (m = ⌊ρ·limit⌋ positions). 0 = all; more than the
  // split holds is an error.
  std::int64_t limit = 0;
  // "imagefolder" only: unreadable or corrupt images are left out of their batch and counted
  // (ImageFolderDataset::num_skipped) instead of being an error. Other kinds refuse it.
  bool skip_unreadable = false;
  // "domainnet" only.
  std::string domain = "clipart";
  int sample = 1;
  std::string label_source;  // "", "weak" or "true"
  // "mit-indoor", "cub200", "stanford-cars", "stanford-dogs" and "awa2" only.
  double valid_split = 0.1;
  std::uint64_t split_seed = 0;
  // "glue" only.
  std::string task;
  std::string tokenizer;
  std::int64_t max_length = 128;
  int lowercase = -1;  // WordPiece: -1 = from the tokenizer folder (see TokenizerSpec)
  // Synthetic label noise (SPEC §6) on every sample of the opened split, keyed by sample id (label_noise.h);
  // noise_rate 0 = none. noise_mode "auto" is "flip" for glue (§6.3) and "symmetric" otherwise (§6.1).
  // noise_chunk -1 = auto: 1000 for glue (the reference's datasets.map batches), 0 (one chunk) otherwise.
  // For domainnet, noise goes on the true labels (the reference's --synthetic_noise): label_source ""
  // becomes "true", and "weak" is an error.
  double noise_rate = 0.0;
  std::string noise_mode = "auto";
  std::uint64_t noise_seed = 0;
  std::int64_t noise_chunk = -1;
};

// Per-channel mean and stddev for a `normalize` name (1-channel names repeat their value).
// Throws hessgap::Error for an unknown name.
struct NormalizeStats {
  std::array<double, 3> mean;
  std::array<double, 3> stddev;
  int channels;  // 3, 1, or 0 for "none" (either)
};
NormalizeStats normalize_stats(const std::string& name);

// Opens the dataset `spec` describes (see DatasetSpec). Not collective; every rank opens its own.
// Layers, inside out: the split (with max_per_class), a data::SubsetDataset when limit > 0, a
// data::NoisyLabelDataset when noise_rate > 0 (data::source_dataset finds the innermost).
// Throws hessgap::Error for an unknown kind, split, normalize name or noise mode, a path that does not
// hold the expected files, resize/crop given for "idx", pad/grey_to_rgb given for a kind other than
// "idx", a negative pad or limit, a limit above the split's size, a noise rate outside [0, 1], label noise
// on a split with unlabelled samples (label -1), and every error of the dataset's constructor.
std::unique_ptr<Dataset> open_dataset(const DatasetSpec& spec);

// Whether a kind's "train" split already excludes a validation split of its own ("val"): DomainNet,
// Caltech-256, FGVC Aircraft and Oxford Flowers (official lists, the reference's separate phases) and
// MIT-Indoor (its loader holds valid_split out of TrainImages.txt). Training validates on that split
// instead of holding ids out of "train" again.
bool has_own_valid_split(const std::string& kind);

// The label-noise settings `spec` asks for (rate, resolved mode and chunking, seed), as open_dataset
// applies them; the trainer applies them to the training ids alone.
LabelNoiseOptions label_noise_options(const DatasetSpec& spec);

}  // namespace hessgap::data
