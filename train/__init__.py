"""Fine-tuning BLIP and Mask R-CNN with accelerate, the synthetic shapes data set and the shared metrics.

- :mod:`train.shapes`: the deterministic synthetic shapes data set (images, COCO instances, Flickr-style captions).
- :mod:`train.caption`: BLIP fine-tuning on Flickr-style captions (BLEU-1..4 and CIDEr each epoch).
- :mod:`train.segment`: Mask R-CNN fine-tuning on COCO-format data (COCOeval bbox and segm AP each epoch).
- :mod:`train.evaluate`: evaluate a catalog captioner or segmenter on a data set folder (:mod:`pipeline.evaluation`).
- :mod:`train.make_shapes_models`: the one command that rebuilds the offline ``shapes`` models.
"""
