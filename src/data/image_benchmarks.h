// Six image classification benchmarks of the reference (SPEC.md §2.1, §3.2) read from their official
// archive layouts: FGVC-Aircraft, CUB-200-2011, Stanford Cars, Stanford Dogs, Oxford Flowers-102 and
// Animals with Attributes 2. Each reader turns the annotation files into an ImageList (image_list.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image_list.h"
#include "data/transforms.h"

namespace hessgap::data {

// Splits. The reference's loaders (SPEC §3.2) come in three kinds. The trainer (job/train_job.cpp) opens
// "train" and, unless the kind has its own val split, holds out int(n * valid_split) of it keyed by --seed
// (split_train_valid in sampler.h). So:
// * official phases (aircraft, flowers102): "train", "val", "test" are the archive's own disjoint lists
//   (the trainer validates on "val" for the kinds it lists as having their own val split).
// * official train/test (cub200, stanford-cars, stanford-dogs): "train" is the whole official train list,
//   so that the trainer's keyed hold-out is the reference's "valid_split of train becomes validation";
//   "val" is exactly that hold-out: entries split_train_valid(n_train, valid_split, split_seed).valid of
//   the train list (ascending), i.e. the samples the trainer validates on with the same --valid-split and
//   --seed (and no --train-subset). "val" is therefore a SUBSET of "train". "test" is the official test list.
// * one pool (awa2: "random valid and test splits from one pool"): the test part is the first
//   int(N * kAwa2TestFraction) entries of rng::permutation(N, make_key(0, Stream::kShuffle, kAwa2TestTag))
//   of the pool, in pool order; "train" is the rest, "val" the keyed hold-out of it as above. The test
//   part is keyed by a constant, not by split_seed, as the reference's np.random.seed(0) is constant:
//   the trainer opens its train split with split_seed = --seed but its test split with the config's
//   split_seed, and a seeded test part would then overlap the training data. The reference's fractions
//   (valid 0.2, test 0.2 of the pool) are test 0.2 here and --valid-split 0.25 (0.25 * 0.8 = 0.2).
// numpy's permutations cannot be reproduced, so every random split is the reference's rule on hessgap's
// generator: a different but fixed subset of the same size.
struct ImageBenchmarkOptions {
  EvalTransform transform;         // the reference's eval: resize 256, crop 224, ImageNet statistics
  double valid_split = 0.1;        // cub200, stanford-cars, stanford-dogs, awa2: in [0, 1), see above
  std::uint64_t split_seed = 0;    // the same, the key of the hold-out
  std::int64_t max_per_class = 0;  // first N samples (index order) of each class within the split; 0 = all
  int num_threads = 4;
};

constexpr double kAwa2TestFraction = 0.2;
constexpr std::uint64_t kAwa2TestTag = 0xA3A2;

// Layouts. `root` may be the folder named below or the folder that holds it (the name in brackets), as
// the archives unpack and torchvision expects. Sample order is the list file's; every image named by a
// list must exist (checked once by listing its folder). Errors (hessgap::Error) name the missing or
// malformed file (with the line or entry) and what was expected; an unknown split is an error.
//
// aircraft [fgvc-aircraft-2013b, data]: data/variants.txt (class names, one a line, file order =
//   label order, 100 variants), data/images_variant_{train,val,trainval,test}.txt ("<image id> <variant>",
//   the variant may contain spaces), data/images/<image id>.jpg. Splits: train | val | trainval | test.
//   The copyright banner at the bottom of each image is kept (as torchvision's FGVCAircraft).
// cub200 [CUB_200_2011]: classes.txt ("<class id> <name>", ids 1..K), images.txt ("<image id> <path>"),
//   image_class_labels.txt ("<image id> <class id>"), train_test_split.txt ("<image id> <1 train | 0 test>"),
//   images/<path>. Order: images.txt. Splits: train | val | test. Labels: class id - 1.
// stanford-cars [stanford_cars]: either the devkit layout (torchvision's StanfordCars):
//   devkit/cars_meta.mat (class_names: cell of 196 names), devkit/cars_train_annos.mat and
//   cars_test_annos_withlabels.mat (in the root or devkit/; the devkit's own cars_test_annos.mat has no
//   labels) with `annotations`, a struct array with fields `class` (1-based) and `fname`, images in
//   cars_train/ and cars_test/; or the all-in-one layout: cars_annos.mat (class_names; annotations with
//   `relative_im_path`, `class`, `test` 0/1) and car_ims/. The devkit layout wins when both exist.
//   Splits: train | val | test.
// stanford-dogs: Images/<synset>-<breed>/<file>.jpg and train_list.mat / test_list.mat (in the root or
//   lists/) with file_list (cell of "<synset>-<breed>/<file>.jpg") and labels (1-based). Classes: the
//   sub-folders of Images/ sorted by name (the official label order); each entry's label must be its
//   folder's. Splits: train | val | test.
// flowers102 [flowers-102]: jpg/image_NNNNN.jpg, imagelabels.mat (labels: 1-based class of image k at
//   position k), setid.mat (trnid, valid, tstid: 1-based image ids; 1020 / 1020 / 6149). Splits: train =
//   trnid | val = valid | test = tstid, in the file's order (torchvision's Flowers102). Classes: 1..K
//   (K = the largest label), named "1".."K" (the archive has no names). The reference splits one pool at
//   random with valid 0.1246 and test 0.7509, fractions that give the official sizes; the official lists
//   are used instead.
// awa2 [Animals_with_Attributes2]: classes.txt ("<class id> <name>", ids 1..K; label order) and
//   JPEGImages/<name>/*.jpg (.jpg/.jpeg/.png, sorted by name; sub-folders not searched). Pool order: class
//   by class, files sorted. Splits: train | val | test, see above. The reference's AnimalAttributesDataLoader
//   read an unshipped numpy dump with weak (predicted) labels; the true labels are used here.
ImageList read_aircraft(const std::string& root, const std::string& split);
ImageList read_cub200(const std::string& root, const std::string& split, double valid_split, std::uint64_t split_seed);
ImageList read_stanford_cars(const std::string& root, const std::string& split, double valid_split,
                             std::uint64_t split_seed);
ImageList read_stanford_dogs(const std::string& root, const std::string& split, double valid_split,
                             std::uint64_t split_seed);
ImageList read_flowers102(const std::string& root, const std::string& split);
ImageList read_awa2(const std::string& root, const std::string& split, double valid_split, std::uint64_t split_seed);

// The kinds above: aircraft, cub200, stanford-cars, stanford-dogs, flowers102, awa2.
const std::vector<std::string>& image_benchmark_kinds();
bool is_image_benchmark(const std::string& kind);

// Reads `kind`'s layout at `root` and wraps the split in an ImageListDataset. Throws hessgap::Error for
// an unknown kind, valid_split outside [0, 1) (kinds that use it), and every error of the reader and of
// ImageListDataset.
std::unique_ptr<ImageListDataset> open_image_benchmark(const std::string& kind, const std::string& root,
                                                       const std::string& split,
                                                       const ImageBenchmarkOptions& options = {});

}  // namespace hessgap::data
