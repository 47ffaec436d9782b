"""``melfront export``: a trained classifier with its frontend to ONNX, checked against eager before writing.

>>> [name for name, _, _ in COMMANDS]
['export']
"""
from __future__ import annotations

__all__ = ["COMMANDS"]


def _add_export(sub):
    p = sub.add_parser("export", help="export a trained classifier (frontend + model) to ONNX, checked against eager",
                       description="Load the classifier of RUN (a run folder written by 'melfront train', or its "
                                   "checkpoint.pt), export it with its frontend to ONNX (torch.onnx dynamo exporter, "
                                   "dynamic batch and, where the model allows, a dynamic number of frames), run the "
                                   "graph in onnxruntime on held-out random inputs and write OUTPUT only if it equals "
                                   "eager PyTorch to 1e-5 (relative: max |onnx - eager| / max |eager|).")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("-o", "--output", default="model.onnx", help="ONNX file to write (default model.onnx)")
    p.add_argument("--streaming", action="store_true",
                   help="a stateful graph (patch, pcen_state) -> (logits, pcen_state) for consecutive patches of a "
                        "stream (needs a PCEN frontend)")


def _run_export(args):
    from ..export import StreamingClassifier, check_onnx, export_onnx, held_out_inputs
    from ..errors import ParameterError
    from ..train import dummy_input, load_classifier
    from pathlib import Path
    if Path(args.output).is_dir():  # refused before the model is loaded and exported
        raise ParameterError(f"-o/--output {args.output}: is a directory; give the ONNX file to write, e.g. "
                             f"{Path(args.output) / 'model.onnx'}")
    clf, cfg = load_classifier(args.run)
    example = dummy_input(clf.input_kind, cfg["mel"], cfg["patch_frames"], batch=2)
    module, inputs = clf, (example,)
    names, outputs = ["mel" if clf.input_kind == "mel" else "waveform"], ["logits"]
    if args.streaming:
        module = StreamingClassifier(clf)
        inputs = (example, module.initial_state(first_frames=example))
        names, outputs = ["mel", "pcen_state"], ["logits", "pcen_state_out"]
    try:
        path = export_onnx(module, inputs, args.output, input_names=names, output_names=outputs)
        dynamic, frames = True, "a dynamic number of"
    except ParameterError:
        # the backbone fixes the patch length (e.g. a dense layer over all frames): export that length
        path = export_onnx(module, inputs, args.output, input_names=names, output_names=outputs, time_axis=False)
        dynamic, frames = False, f"exactly {cfg['patch_frames']}"
    err = max(check_onnx(path, module, x) for x in held_out_inputs(inputs, dynamic, seed=1))
    unit = "frames" if clf.input_kind == "mel" else "frames' worth of samples"
    print(f"wrote {path}: inputs {', '.join(names)} with {frames} {unit}; outputs {', '.join(outputs)}; "
          f"onnxruntime vs eager on held-out inputs: {err:.2g} (relative)")


COMMANDS = [("export", _add_export, _run_export)]
