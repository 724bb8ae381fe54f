"""echogen models: diffusers-style ``ModelMixin`` + ``ConfigMixin`` classes, one file per family.

``regressor``: the ejection-fraction video regressors (R(2+1)D-18 / R3D-18) used by
EchoNet-Dynamic, EchoDiffusion and D'ARTAGNAN to score real and generated echocardiograms.
"""
