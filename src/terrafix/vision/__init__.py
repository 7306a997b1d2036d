"""terrafix.vision"""
