"""Request decoding and response encoding for the Open Inference Protocol v2 and KServe v1.

Transport-free: bytes or parsed JSON in, a checked model batch out; results in, JSON (and, for
the v2 binary tensor extension, raw bytes) out. Every problem raises an InferenceError whose
message names the input, feature or field at fault.

Input level: `tensors` (tensor data -> typed flat arrays) and `features` (one feature's values
-> the model's column). Request level: `v2` and `v1`, each a protocol's whole request and
response, over what `request` holds for both.
"""
