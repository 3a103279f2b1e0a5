"""The face stage and the helpers it is made of.

- `stage`: the `detect_faces` rule (`python -m pipeline.faces`): the primary subject's face
  box and landmarks in every frame.
- `detector` (the MTCNN / pre-cropped face detector the stage and prediction share), `mtcnn`
  (facenet-pytorch's networks, run in batches), `tracking` (tracks and the primary subject),
  `identity` (following the person of a reference photo), `landmarks` (dlib's 68 points),
  `headpose` and `reference3d` (pose against a generic 3D face, used by `frontalize`),
  `facemesh` (MediaPipe's Face Landmarker, used by the blendshape and mesh backbones).
"""
