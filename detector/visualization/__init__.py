"""Pictures and charts: detections drawn on images (drawing), the training
curves (curves), and rcnn-report's study report (report, report_classes: the
tables and charts of a study's runs; they sit here, with the other figures,
rather than in cli/, because rcnn-report is only their command line)."""
