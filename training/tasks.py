"""What differs between the tasks one network serves: its data, output head, loss, score and test report.

`remove` (the project's task): depth face with an expression in, the same person's neutral depth out.
`segment` (the original network's task, to reproduce its result): a grey face photograph of LFW Part Labels
in, the probability that each pixel is face out.
`mask` (remove's helper): remove's depth face with an expression in, the probability that each pixel is face in
the same person's neutral face out: where remove's output is surface (inference.background).
"""
import dataclasses
import math
import os

import numpy as np

from depth.convention import FULL_SCALE_MM, mm_to_network, network_to_mm
from depth.dataset import DataError, Dataset
from evaluation.baselines import LinearBaseline, baseline_outputs, mean_face, model_fit_outputs, model_fit_sample
from evaluation.metrics import (INSIDE_DISTANCE_PX, MS_SSIM_FILTER_SIZE, iou_per_class, mean_abs_error_map,
                                mean_iou, parse_name, per_image_face_rmse, per_image_metrics, pixel_accuracy,
                                summarise)
from evaluation.recognition import recognition
from evaluation.report import print_table, write_report
from faces import generated
from inference.background import DEFAULT_THRESHOLD_MM
from training import lfw_parts
from training.splits import check_separate_subjects


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a task's data come from (the command line resolves it once)."""
    folder: str                     # remove: inputs/ and targets/ of each split; segment: LFW Part Labels
    targets: str = None             # segment: the folder of the masks
    generated_dir: str = None       # remove: the cache of generated identities
    generated_subjects: int = 0     # remove: generated identities that join the committed training split
    gallery_subjects: int = 0       # remove: generated identities of the recognition gallery (0 = none)
    generated_variations: tuple = ()  # remove: faces.variation kinds of the generated training identities
    plain_subjects: int = 0         # remove: the first generated identities again, as the face model made them
    family_subjects: int = 0        # remove: subjects of the held-out validation family (0 = none)
    neutral_repeats: int = 0        # remove: each training subject's neutral pair this many times more
    plain_repeats: int = 0          # remove: the face model's own faces (committed and plain) this many times more


def neutral_indices(names):
    """Where the neutral pairs (code NE: the input is the target) are among these file names."""
    return [index for index, name in enumerate(names) if parse_name(name)[1] == 'NE']


def soft_threshold(tf, values, threshold):
    """Each value moved towards 0 by threshold, and 0 within it."""
    return tf.sign(values) * tf.nn.relu(tf.abs(values) - threshold)


def local_relief(tf, images):
    """Each pixel's 3 x 3 range (maximum - minimum, background included) of N x H x W x 1 images."""
    return tf.nn.max_pool2d(images, 3, 1, 'SAME') + tf.nn.max_pool2d(-images, 3, 1, 'SAME')


def masked_mean(tf, values, weight):
    """The weighted mean of a tensor (0 where the weights sum to 0, e.g. a batch without any face)."""
    return tf.math.divide_no_nan(tf.reduce_sum(values * weight), tf.reduce_sum(weight))


class RemovalTask:
    name = 'remove'
    losses = ('mse', 'rmse')
    # face: over the whole image the network stopped painting outlines the expression had moved (experiments.md)
    loss_regions = ('face', 'image')
    default_loss = 'mse'
    score_name = 'valid RMSE (mm)'
    training_score_tag = 'rmse_mm'
    grid_shows_depth = True
    report_files = ('report.md', 'report.png')

    @staticmethod
    def load(data, split):
        return Dataset.load(data.folder, split)

    # Recognition probes of each gallery subject: the six prototypes at full intensity and two random mixtures
    # (the realistic case). With its neutral face, 9 of the subject's 27 renders: model and distances stay fast.
    GALLERY_PROBES = ('HA04', 'SA04', 'SU04', 'FE04', 'AN04', 'DI04', 'MX01', 'MX02')

    def load_gallery(self, data):
        """The recognition gallery of generated identities (neutral faces and probes), or None without one."""
        if not data.gallery_subjects:
            return None
        codes = ('NE00',) + self.GALLERY_PROBES
        folder = generated.ensure_gallery(data.generated_dir, data.gallery_subjects, only=codes)  # renders these only
        chosen = {f'{code_level}.png' for code_level in codes}
        return Dataset.load(folder, 'train', select=lambda name: name[5:] in chosen)

    def load_for_training(self, data):
        """(training set, valid split, held-out family or None), checked: the splits of data.folder hold other
        subjects (training.splits), and the valid split has a face to score."""
        committed, valid = self.load(data, 'train'), self.load(data, 'valid')
        check_separate_subjects(data.folder, {'train': committed, 'valid': valid})
        if not valid.targets.any():
            raise DataError(f"{os.path.join(data.folder, 'targets', 'valid')}: no target has a face pixel (all "
                            "background): validation scores the face, so no checkpoint could ever be chosen")
        return self.with_generated(committed, data), valid, self.load_family(data)

    @staticmethod
    def with_generated(committed, data):
        """The committed training split, joined by the generated identities (made if not cached): varied as
        data.generated_variations says, and the first data.plain_subjects of them again as the face model made
        them (the committed valid and test splits are such faces); with data.neutral_repeats, each neutral pair
        that many times more: a neutral input should come out as itself, and it is one pair of a subject's 31-37;
        with data.plain_repeats, the face model's own faces (the committed split and the plain identities) that
        many times more, so that they weigh more against the varied ones."""
        parts, unvaried = [committed], [committed]
        if data.generated_subjects:
            parts.append(Dataset.load(generated.ensure_training_identities(
                data.generated_dir, data.generated_subjects, data.generated_variations), 'train'))
        if data.plain_subjects and data.generated_variations:
            unvaried.append(Dataset.load(generated.ensure_training_identities(data.generated_dir,
                                                                              data.plain_subjects), 'train'))
            parts.append(unvaried[-1])
        if data.neutral_repeats:
            parts += [part.subset(neutral_indices(part.names) * data.neutral_repeats) for part in list(parts)]
        parts += unvaried * data.plain_repeats
        return parts[0] if len(parts) == 1 else Dataset.joined(parts)

    def load_for_testing(self, data):
        """(test split, training split or why there is none; the baselines fit on it), checked as
        load_for_training checks: only inputs/test and targets/test are needed."""
        test = self.load(data, 'test')
        try:
            train = self.load(data, 'train')
        except DataError as error:
            train = f'mean_face and linear need the training split: {error}'
        check_separate_subjects(data.folder, {**({} if isinstance(train, str) else {'train': train}), 'test': test})
        return test, train

    @staticmethod
    def load_family(data):
        """The held-out validation family (faces of a kind no training draws from), or None without one."""
        if not data.family_subjects:
            return None
        return Dataset.load(generated.ensure_validation_family(data.generated_dir, data.family_subjects), 'train')

    @staticmethod
    def logits(tf, network_logits, inputs, architecture):
        return network_logits

    @staticmethod
    def output(tf, logits, inputs, architecture):
        if architecture['residual']:
            # Predict the correction to the input: the expression's displacement is smooth, the face's
            # detail is not, and the input already carries that detail. The correction is scaled by a
            # learned gate that starts at 0, so training starts from 'do nothing' instead of from the
            # large random correction of freshly initialised (tied) weights.
            gate = tf.compat.v1.get_variable('residual_gate', [], initializer=tf.zeros_initializer())
            return inputs + gate * logits
        return logits

    @staticmethod
    def training_score(tf, output, targets):
        """The training batch's RMSE over the face in mm, whatever the loss: it compares with validation's."""
        face = tf.cast(targets > 0, tf.float32)
        return tf.sqrt(masked_mean(tf, tf.square(output - targets), face)) * FULL_SCALE_MM

    # --background-weight's hinge: beside the input's face, where the target has no face either, output above
    # this height is penalised: half the height from which infer's background rule keeps an output there.
    BACKGROUND_MARGIN_MM = DEFAULT_THRESHOLD_MM / 2

    @classmethod
    def painted_background(cls, tf, output, targets, inputs):
        """The squared height (network scale) by which the output stands above BACKGROUND_MARGIN_MM where neither
        the input nor the target has a face, summed and divided by the face's pixels, as the face loss is: the
        face loss never sees the surface the network paints beside the face. Not where the input has a face and
        the target none (an outline the expression moved inwards): erasing there cost the face its fit
        (results/experiments.md). A hinge, not a pull to 0: below the margin the background rule erases."""
        beside = tf.cast((targets <= 0) & (inputs <= 0), tf.float32)
        above = tf.nn.relu(output - cls.BACKGROUND_MARGIN_MM / FULL_SCALE_MM) * beside
        return tf.math.divide_no_nan(tf.reduce_sum(tf.square(above)),
                                     tf.reduce_sum(tf.cast(targets > 0, tf.float32)))

    # --deadband-relief: on faces the network barely changes, the deadband widens with the input's local relief.
    # An image's change is the RMS of its deadbanded displacement over the input's inner face; the relief's share
    # falls linearly from full at no change to none at NEAR_NEUTRAL_MM (chosen on the valid split and the held-out
    # family, results/experiments.md).
    NEAR_NEUTRAL_MM = 2.0

    @classmethod
    def with_deadband(cls, tf, output, inputs, deadband_mm, relief_share=0.0):
        """The output with the network's displacement of the input's surface shrunk towards none (soft
        thresholding; both in the network's scale) by deadband_mm: a change smaller than that is not made. Most of
        it is the network's ripple on faces it should leave alone (neutral inputs, the still parts of a face).
        With relief_share, the threshold grows by that share of the input's local relief (its 3 x 3 range) times
        the image's near_neutral_weight: where a face hardly changes, the network's error is its redrawing of
        steep edges (the jaw above the neck, nostrils, lips) by a few mm, which the input already has exactly.
        Both measured on the valid split and the held-out family (results/experiments.md). Where the input or
        the output has no surface, the output is kept as it is: the background rule decides there."""
        surface = (inputs > 0) & (output > 0)
        displacement = output - inputs
        threshold = deadband_mm / FULL_SCALE_MM
        if relief_share:
            # the weight looks only at the inner face, where input and output have surface
            change = soft_threshold(tf, displacement, threshold)
            threshold += (relief_share * cls.near_neutral_weight(tf, change, surface, inputs)
                          * local_relief(tf, inputs))
        return tf.where(surface, inputs + soft_threshold(tf, displacement, threshold), output)

    @classmethod
    def near_neutral_weight(cls, tf, change, surface, inputs):
        """Per image (N x 1 x 1 x 1), 1 - (RMS of `change` in mm over the input's inner face) / NEAR_NEUTRAL_MM,
        clipped to [0, 1]; 0 for an image without inner face. The inner face: surface pixels with no background
        of the input within INSIDE_DISTANCE_PX - 1 pixels along rows and columns (the image's border does not
        count): a change of the outline band says less about the expression than one inside the face."""
        reach = 2 * INSIDE_DISTANCE_PX - 1
        near_background = tf.nn.max_pool2d(tf.cast(inputs <= 0, tf.float32), reach, 1, 'SAME')
        inner = tf.cast(surface, tf.float32) * (1 - near_background)
        count = tf.reduce_sum(inner, [1, 2, 3], keepdims=True)
        rms_mm = tf.sqrt(tf.math.divide_no_nan(tf.reduce_sum(tf.square(change) * inner, [1, 2, 3], keepdims=True),
                                               count)) * FULL_SCALE_MM
        return tf.where(count > 0, tf.clip_by_value(1 - rms_mm / cls.NEAR_NEUTRAL_MM, 0, 1), tf.zeros_like(count))

    @staticmethod
    def format_training_score(score):
        return f'train RMSE {score:.3f} mm'

    @staticmethod
    def valid_score(outputs, targets):
        """Mean over images of each image's RMSE in mm over its face: lower is better."""
        per_image = per_image_face_rmse(network_to_mm(outputs), network_to_mm(targets))
        return float(np.nanmean(per_image))

    @staticmethod
    def format_score(score):
        return f'valid RMSE {score:.3f} mm'

    @staticmethod
    def cleaned(outputs, inputs, background):
        """Outputs (network scale, N x H x W x 1) with their background decided as infer writes it
        (inference.background, which takes images without the channel axis)."""
        return mm_to_network(background.apply(network_to_mm(outputs[..., 0]), network_to_mm(inputs[..., 0])))[
            ..., np.newaxis]

    def evaluate(self, data, test_set, outputs, provenance, say, report_dir, background, gallery=None,
                 gallery_outputs=None, model_fit_every=0, train=None):
        """test_metrics.json: the model beside the baselines, per expression and level, and recognition (on the
        test split, and on the generated gallery when there is one); the report goes into report_dir. say(text)
        tells what it is doing, as each part takes seconds; `background` (inference.background.Background)
        decides the written outputs' background. `train`: the training split, or why there is none
        (load_for_testing). provenance: what was tested on what (evaluation.testing.provenance), recorded as is."""
        inputs_mm, targets_mm = (network_to_mm(test_set.inputs[..., 0]), network_to_mm(test_set.targets[..., 0]))
        outputs_mm = network_to_mm(outputs[..., 0])
        say("the model's errors and MS-SSIM")
        cleaned_mm = background.apply(outputs_mm, inputs_mm)
        model = summarise(per_image_metrics(outputs_mm, targets_mm, cleaned_mm), test_set.names)
        metrics = {key: value for key, value in model.items() if key != 'n'}
        metrics.update(n_images=model['n'], **provenance, ms_ssim_filter_size=MS_SSIM_FILTER_SIZE,
                       background=background.describe())
        say("the baselines (identity; mean face and linear, fitted on the training split; the face model's fit"
            + (f" on every {model_fit_every}th image, several seconds each)" if model_fit_every else ", skipped)"))
        metrics.update(self._baselines(train, inputs_mm, targets_mm, test_set.names, background, model_fit_every,
                                       outputs_mm))
        say("recognition, raw and neutralised")
        metrics['recognition'] = self._recognition(test_set.names, inputs_mm, targets_mm, cleaned_mm)
        if gallery is not None:
            say(f"recognition on the gallery of {data.gallery_subjects} generated identities")
            metrics['recognition_gallery'] = self._gallery_recognition(data.gallery_subjects, background, gallery,
                                                                       gallery_outputs)
        say("the report")
        write_report(metrics, report_dir, mean_abs_error_map(outputs_mm, targets_mm))
        return metrics

    @staticmethod
    def _baselines(train, inputs_mm, targets_mm, names, background, model_fit_every, outputs_mm):
        """The identity baseline always; the mean face and the linear map need the training split `train` (a
        string says why there is none); the model fit runs on every model_fit_every-th image (0 = not at all),
        and its block also holds the model's and the identity's scores on that sample. Backgrounds are decided as
        the model's is."""
        def scored(outputs, chosen=slice(None)):
            return per_image_metrics(outputs, targets_mm[chosen], background.apply(outputs, inputs_mm[chosen]))

        blocks = {'identity': scored(inputs_mm)}
        if isinstance(train, str):
            note = train
        else:
            train_inputs, train_targets = network_to_mm(train.inputs[..., 0]), network_to_mm(train.targets[..., 0])
            neutral = neutral_indices(train.names)
            linear = LinearBaseline().fit(train_inputs, train_targets)
            neutral_mean = mean_face(train_targets[neutral] if neutral else train_targets)
            outputs = baseline_outputs(inputs_mm, neutral_mean, linear)
            blocks.update({name: scored(outputs[name]) for name in ('mean_face', 'linear')})
            note = linear.describe()
        summaries = {name: summarise(block, names) for name, block in blocks.items()}
        if model_fit_every:
            sample = model_fit_sample(len(inputs_mm), model_fit_every)
            fitted, seconds = model_fit_outputs(inputs_mm[sample])
            sample_names = [names[i] for i in sample]
            summaries['model_fit'] = dict(
                summarise(scored(fitted, sample), sample_names), seconds_per_image=round(seconds, 2),
                sample=f'every {model_fit_every}th test image from the first ({len(sample)} of {len(names)})',
                on_the_same_sample={method: summarise(scored(images[sample], sample), sample_names)
                                    for method, images in (('model', outputs_mm), ('identity', inputs_mm))})
        return {'baselines': summaries, 'linear_baseline': note}

    @staticmethod
    def _recognition(names, inputs_mm, targets_mm, neutralised_mm):
        """Gallery: each subject's neutral target; probes: the expressive inputs, raw and neutralised."""
        parsed = [parse_name(name) for name in names]
        subjects = [subject for subject, _, _ in parsed]
        if None in subjects:
            return {'skipped': 'file names do not follow the SSSS_CCLL.png scheme, so subjects are unknown'}
        gallery = {}
        for index, (subject, code, _) in enumerate(parsed):
            if code == 'NE':
                gallery.setdefault(subject, index)
        probes = [i for i, (_, code, _) in enumerate(parsed) if code != 'NE']
        if len(gallery) < 2 or not probes:
            return {'skipped': 'recognition needs neutral faces of at least two subjects and expressive probes'}
        gallery_ids, gallery_images = list(gallery), targets_mm[list(gallery.values())]
        probe_ids = [subjects[i] for i in probes]
        result = {kind: recognition(gallery_images, gallery_ids, images[probes], probe_ids)
                  for kind, images in (('raw', inputs_mm), ('neutralised', neutralised_mm))}
        return {'raw': {key: result['raw'][key] for key in ('rank1', 'eer')},
                'neutralised': {key: result['neutralised'][key] for key in ('rank1', 'eer')},
                'distance': result['raw']['distance'], 'n_gallery': len(gallery_ids), 'n_probes': len(probes)}

    def _gallery_recognition(self, subjects, background, gallery, outputs):
        """Recognition on the generated gallery, and the RMSE per expression of its probes (unseen identities)."""
        inputs_mm, targets_mm = network_to_mm(gallery.inputs[..., 0]), network_to_mm(gallery.targets[..., 0])
        block = self._recognition(gallery.names, inputs_mm, targets_mm,
                                  background.apply(network_to_mm(outputs[..., 0]), inputs_mm))
        rmse = {method: summarise({'rmse_mm': per_image_face_rmse(images, targets_mm)},
                                             gallery.names)['per_expression']
                for method, images in (('model', network_to_mm(outputs[..., 0])), ('identity', inputs_mm))}
        block.update(subjects=subjects, seed=generated.GALLERY_SEED,
                     probes=f"per subject: {', '.join(self.GALLERY_PROBES)}; gallery: the NE00 targets",
                     rmse_mm_per_expression={method: {code: group['rmse_mm'] for code, group in groups.items()}
                                             for method, groups in rmse.items()})
        return block

    @staticmethod
    def print_metrics(metrics):
        print_table(metrics)


class SegmentationTask:
    """Face segmentation on LFW Part Labels, as the original network did it (see lfw_parts.py for the data).

    The output is sigmoid(logits), a probability; a pixel is face when it is >= 0.5. The input is grey
    only (the network has one input channel). `residual` does not apply: the command line sets it to False
    for this task and output() ignores it. Scores and metrics are in percent, as the original reported them.
    """
    name = 'segment'
    losses = ('rmse', 'bce')
    loss_regions = ('image',)
    default_loss = 'rmse'
    score_name = 'valid pixel error (%)'
    training_score_tag = 'pixel_accuracy'
    grid_shows_depth = False
    report_files = ()
    THRESHOLD = 0.5

    @staticmethod
    def load(data, split):
        return lfw_parts.load(data.folder, split, data.targets)

    def load_for_training(self, data):
        return self.load(data, 'train'), self.load(data, 'valid'), None

    def load_for_testing(self, data):
        return self.load(data, 'test'), None

    @staticmethod
    def load_gallery(data):
        return None  # recognition is the depth task's

    @staticmethod
    def load_family(data):
        return None  # the held-out family is made of depth faces

    @staticmethod
    def logits(tf, network_logits, inputs, architecture):
        return network_logits

    @staticmethod
    def output(tf, logits, inputs, architecture):
        return tf.sigmoid(logits)

    def training_score(self, tf, output, targets):
        """The training batch's per-pixel accuracy in %, as validation reports it."""
        right = tf.equal(output >= self.THRESHOLD, targets >= self.THRESHOLD)
        return 100 * tf.reduce_mean(tf.cast(right, tf.float32))

    @staticmethod
    def format_training_score(score):
        return f'train accuracy {score:.2f} %'

    def valid_score(self, outputs, targets):
        """100 - per-pixel accuracy in %: lower is better, as the training loop wants."""
        return 100 - 100 * pixel_accuracy(outputs, targets, self.THRESHOLD)

    @staticmethod
    def format_score(score):
        return f'valid accuracy {100 - score:.2f} %' if math.isfinite(score) else 'no valid accuracy yet'

    def cleaned(self, outputs, inputs, background):
        """The predicted mask: probability >= 0.5 is face, as in the original's figure."""
        return (outputs >= self.THRESHOLD).astype(np.float32)

    def evaluate(self, data, test_set, outputs, provenance, say, report_dir, background, gallery=None,
                 gallery_outputs=None, model_fit_every=0, train=None):
        """test_metrics.json: per-pixel accuracy and mean IoU of the two classes, in percent (no report)."""
        say("accuracy and IoU")
        return dict(self.scores(outputs, test_set.targets),
                    # what predicting background everywhere would score: the floor any model must clear
                    all_background_accuracy=100 * (1 - float(np.mean(test_set.targets >= self.THRESHOLD))),
                    units='percent; IoU over all test pixels pooled; output >= 0.5 is face',
                    n_images=len(test_set), **provenance, targets=data.targets,
                    split=dict(lfw_parts.split_sizes(data.folder, data.targets),
                               rule='sorted file names: train first 70 %, valid next 15 % (both rounded down), '
                                    'test the rest'))

    def scores(self, outputs, targets):
        """Per-pixel accuracy, mean IoU and each class's IoU of probabilities (or masks) against masks, in %."""
        iou_background, iou_face = iou_per_class(outputs, targets, self.THRESHOLD)
        return {'pixel_accuracy': 100 * pixel_accuracy(outputs, targets, self.THRESHOLD),
                'mean_iou': 100 * mean_iou(outputs, targets, self.THRESHOLD),
                'iou_background': 100 * iou_background, 'iou_face': 100 * iou_face}

    @staticmethod
    def print_metrics(metrics):
        print(f"pixel accuracy {metrics['pixel_accuracy']:.2f} %, mean IoU {metrics['mean_iou']:.2f} % "
              f"(background {metrics['iou_background']:.2f} %, face {metrics['iou_face']:.2f} %) on "
              f"{metrics['n_images']} test images of {metrics['targets']}; all background would score "
              f"{metrics['all_background_accuracy']:.2f} %")


class NeutralMaskTask(SegmentationTask):
    """Where the neutral face is: remove's data, with each target reduced to its face (target > 0).

    The removal network is trained on the face alone and paints beyond it; a rule of input and output could not
    tell that surface from a true outline the expression had moved (results/experiments.md). This network,
    trained on the whole image, decides it: remove's background rule keeps the output where it says face.
    Scored as segment is (per-pixel error, %), and chosen, as remove is, with the held-out family.
    """
    name = 'mask'
    losses = ('bce',)
    default_loss = 'bce'
    # residual: the logit the input's own face starts from (+ where the input has a face, - where not)
    INPUT_FACE_LOGIT = 4.0

    @classmethod
    def logits(cls, tf, network_logits, inputs, architecture):
        """residual: the network corrects the input's own face mask, as remove corrects the input's heights. Drawn
        on a coarser grid through 5 x 5 strokes, a mask learnt from nothing missed the outline by a pixel on the
        valid split (0.6 % of its pixels wrong after 2,000 steps, where the input's own mask has 0.26 %). The
        weight of the input's mask is learnt, starting at INPUT_FACE_LOGIT."""
        if not architecture['residual']:
            return network_logits
        weight = tf.compat.v1.get_variable('input_face_logit', [],
                                           initializer=tf.constant_initializer(cls.INPUT_FACE_LOGIT))
        return network_logits + weight * tf.where(inputs > 0, 1.0, -1.0)

    @staticmethod
    def as_masks(dataset):
        return None if dataset is None else Dataset(dataset.names, dataset.inputs,
                                                    (dataset.targets > 0).astype(np.float32))

    def load(self, data, split):
        return self.as_masks(RemovalTask.load(data, split))

    def load_for_training(self, data):
        return tuple(self.as_masks(part) for part in TASKS['remove'].load_for_training(data))

    def load_family(self, data):
        return self.as_masks(RemovalTask.load_family(data))

    def evaluate(self, data, test_set, outputs, provenance, say, report_dir, background, gallery=None,
                 gallery_outputs=None, model_fit_every=0, train=None):
        """test_metrics.json: the mask's scores beside the input's own face taken as the neutral face's (doing
        nothing), with the shares of the image it marks face where the neutral face has none (false) and the
        reverse (missing), in percent (no report)."""
        say("accuracy, IoU, false and missing face")

        def scored(masks):
            predicted, truth = masks >= self.THRESHOLD, test_set.targets >= self.THRESHOLD
            return dict(self.scores(masks, test_set.targets),
                        false_face_share=100 * float(np.mean(predicted & ~truth)),
                        missing_face_share=100 * float(np.mean(~predicted & truth)))

        return dict(scored(outputs), input_face=scored((test_set.inputs > 0).astype(np.float32)),
                    units='percent of the test pixels; output >= 0.5 is face', n_images=len(test_set),
                    **provenance)

    @staticmethod
    def print_metrics(metrics):
        for label, block in (('mask', metrics), ("the input's own face", metrics['input_face'])):
            print(f"{label}: pixel accuracy {block['pixel_accuracy']:.3f} %, false face "
                  f"{block['false_face_share']:.3f} %, missing face {block['missing_face_share']:.3f} % of "
                  f"{metrics['n_images']} test images")


TASKS = {task.name: task for task in (RemovalTask(), SegmentationTask(), NeutralMaskTask())}
