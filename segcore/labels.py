"""The label value that means "unknown": nodata, unlabeled or outside the image. It is left out
of every loss and metric, and written as the nodata value of predicted GeoTIFFs."""

IGNORE_INDEX = 255
